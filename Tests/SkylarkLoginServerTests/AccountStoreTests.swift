import Foundation
import SkylarkCrypto
import SkylarkNode
import SkylarkTestSupport
import SkylarkWire
import Testing

@testable import SkylarkLoginServer

/// The SQLite account store, on real files.
@Suite struct AccountStoreTests {
    func record(_ name: String, salt: [UInt8] = SecureRandom.bytes(16), createdAt: Int64 = 1_700_000_000) -> AccountRecord {
        AccountRecord(name: name, salt: salt, passwordHash: SecureRandom.bytes(32), parameters: cheapHashing, createdAt: createdAt)
    }

    @Test func accountsAndSerialsSurviveReopening() throws {
        let directory = try makeTemporaryDirectory()
        defer { removeDirectory(directory) }
        let path = directory + "/accounts.sqlite"
        let alice = record("alice")
        let bob = record("bob", createdAt: 1_700_000_123)
        var serials: [UInt64] = []
        do {
            let store = try SQLiteAccountStore(path: path)
            try store.createAccount(alice)
            try store.createAccount(bob)
            serials.append(try store.nextCredentialSerial())
            serials.append(try store.nextCredentialSerial())
            #expect(try store.account(named: "alice") == alice)
        }
        // A new instance on the same path (the first one is gone).
        let reopened = try SQLiteAccountStore(path: path)
        #expect(try reopened.account(named: "alice") == alice)
        #expect(try reopened.account(named: "bob") == bob)
        #expect(try reopened.account(named: "carol") == nil)
        serials.append(try reopened.nextCredentialSerial())
        // Serials are reserved in blocks: after reopening (or a crash) numbering resumes above the
        // reserved block — strictly increasing, never repeated, with a gap.
        #expect(serials[0] == 1 && serials[1] == 2)
        #expect(serials[2] > serials[1], "the serial counter continues after reopening")
    }

    @Test func duplicateNameIsNameTaken() throws {
        let directory = try makeTemporaryDirectory()
        defer { removeDirectory(directory) }
        let store = try SQLiteAccountStore(path: directory + "/accounts.sqlite")
        let original = record("alice")
        try store.createAccount(original)
        #expect(throws: AccountStoreError.nameTaken("alice")) {
            try store.createAccount(record("alice"))
        }
        #expect(try store.account(named: "alice") == original, "the first account is untouched")
    }

    @Test func unopenablePathIsUnavailable() throws {
        let directory = try makeTemporaryDirectory()
        defer { removeDirectory(directory) }
        do throws(AccountStoreError) {
            _ = try SQLiteAccountStore(path: directory + "/missing-folder/accounts.sqlite")
            Issue.record("opening a store in a missing folder succeeded")
        } catch {
            guard case .unavailable = error else {
                Issue.record("expected unavailable, got \(error)")
                return
            }
        }
    }

    @Test func storedRowsHoldSaltAndHashButNeverThePassword() throws {
        let fixture = try ServerFixture()
        defer { fixture.remove() }
        let password = "Unmistakable-Passw0rd-Marker"
        #expect(try register("alice", password: password, on: fixture).outcome == .registered(name: "alice"))
        #expect(try login("alice", password: password, key: try makeUserKey(), on: fixture).credential != nil)
        #expect(try login("alice", password: password + "!", key: try makeUserKey(), on: fixture).failure == .wrongPassword(name: "alice"))

        // The row: 16-byte salt, the scrypt hash of the password under that salt.
        let database = try SQLiteDatabase(path: fixture.databasePath)
        let rows = try database.execute("SELECT salt, password_hash, scrypt_n, scrypt_r, scrypt_p FROM accounts WHERE name = 'alice'")
        try #require(rows.count == 1)
        guard case let .blob(salt) = rows[0][0], case let .blob(hash) = rows[0][1], case let .int(n) = rows[0][2] else {
            Issue.record("unexpected row \(rows[0])")
            return
        }
        #expect(salt.count == 16)
        #expect(hash.count == 32)
        #expect(n == 1 << 10)
        #expect(hash == (try Scrypt.derive(password: Array(password.utf8), salt: salt, parameters: cheapHashing)))

        let files = try FileManager.default.contentsOfDirectory(atPath: fixture.directory)
        #expect(files.contains("accounts.sqlite"))
        #expect(files.contains("accounts.sqlite-wal"), "WAL mode keeps a -wal file beside the database")
        let needle = Array(password.utf8)
        for file in files {
            let bytes = try #require(FileManager.default.contents(atPath: fixture.directory + "/" + file))
            #expect(!Array(bytes).contains(subsequence: needle), "\(file) holds the password")
        }
        // The scan can find what is there: the hash is in the database or its WAL.
        let everything = try files.flatMap { Array(try #require(FileManager.default.contents(atPath: fixture.directory + "/" + $0))) }
        #expect(everything.contains(subsequence: hash))
    }

    @Test func journalModeIsWAL() throws {
        let directory = try makeTemporaryDirectory()
        defer { removeDirectory(directory) }
        let path = directory + "/accounts.sqlite"
        let store = try SQLiteAccountStore(path: path)
        try store.createAccount(record("alice"))
        let database = try SQLiteDatabase(path: path)
        let rows = try database.execute("PRAGMA journal_mode")
        guard case let .text(mode)? = rows.first?.first else {
            Issue.record("unexpected answer \(rows)")
            return
        }
        #expect(mode.lowercased() == "wal")
        #expect(FileManager.default.fileExists(atPath: path + "-wal"))
    }

    @Test func concurrentSerialsAreUnique() async throws {
        let directory = try makeTemporaryDirectory()
        defer { removeDirectory(directory) }
        let store = try SQLiteAccountStore(path: directory + "/accounts.sqlite")
        let serials = try await withThrowingTaskGroup(of: [UInt64].self) { group in
            for _ in 0..<4 {
                group.addTask { try (0..<25).map { _ in try store.nextCredentialSerial() } }
            }
            var all: [UInt64] = []
            for try await batch in group { all += batch }
            return all
        }
        #expect(serials.count == 100)
        #expect(Set(serials) == Set(1...100))
    }
}
