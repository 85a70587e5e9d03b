import Foundation
import SkylarkCrypto
import Synchronization

/// One account as stored: never the password, only its salted scrypt hash.
public struct AccountRecord: Sendable, Equatable {
    public var name: String
    public var salt: [UInt8]
    public var passwordHash: [UInt8]
    public var parameters: Scrypt.Parameters
    public var createdAt: Int64

    public init(name: String, salt: [UInt8], passwordHash: [UInt8], parameters: Scrypt.Parameters, createdAt: Int64) {
        self.name = name
        self.salt = salt
        self.passwordHash = passwordHash
        self.parameters = parameters
        self.createdAt = createdAt
    }
}

public enum AccountStoreError: Error, Equatable, Sendable, CustomStringConvertible {
    case nameTaken(String)
    case unavailable(String)

    public var description: String {
        switch self {
        case let .nameTaken(name): return "the name '\(name)' is taken"
        case let .unavailable(why): return "account store unavailable: \(why)"
        }
    }
}

/// Where accounts live. SQLite is the embedded default; a PostgreSQL store can implement the same
/// interface so that several login servers share one account set.
///
/// Durability contract: when `createAccount` or `nextCredentialSerial` returns, the change is on
/// stable storage and survives a crash of the process or the machine.
public protocol AccountStore: Sendable {
    func createAccount(_ record: AccountRecord) throws(AccountStoreError)
    func account(named name: String) throws(AccountStoreError) -> AccountRecord?
    /// A serial number never returned before by this store.
    func nextCredentialSerial() throws(AccountStoreError) -> UInt64
}

/// Accounts in one SQLite file, in WAL mode with full synchronous commits.
public final class SQLiteAccountStore: AccountStore {
    private let database: SQLiteDatabase
    /// Credential serials are reserved durably in blocks, so a login costs no fsync of its own:
    /// every serial handed out is at or below a high-water mark already on disk, and after a
    /// crash numbering resumes above it (a gap, never a repeat).
    static let serialBlock: Int64 = 64
    private let serials = Mutex<(next: UInt64, limit: UInt64)>((0, 0))

    public init(path: String) throws(AccountStoreError) {
        do {
            database = try SQLiteDatabase(path: path)
            // WAL + synchronous=FULL: each commit is fsynced before it is acknowledged.
            try database.executeScript(
                """
                PRAGMA journal_mode=WAL;
                PRAGMA synchronous=FULL;
                CREATE TABLE IF NOT EXISTS accounts (
                    name TEXT PRIMARY KEY,
                    salt BLOB NOT NULL,
                    password_hash BLOB NOT NULL,
                    scrypt_n INTEGER NOT NULL,
                    scrypt_r INTEGER NOT NULL,
                    scrypt_p INTEGER NOT NULL,
                    created_at INTEGER NOT NULL
                ) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
                INSERT OR IGNORE INTO counters (name, value) VALUES ('credential_serial', 0);
                """)
        } catch {
            throw .unavailable("\(error)")
        }
    }

    public func createAccount(_ record: AccountRecord) throws(AccountStoreError) {
        do {
            try database.execute(
                "INSERT INTO accounts (name, salt, password_hash, scrypt_n, scrypt_r, scrypt_p, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    .text(record.name), .blob(record.salt), .blob(record.passwordHash), .int(Int64(record.parameters.n)),
                    .int(Int64(record.parameters.r)), .int(Int64(record.parameters.p)), .int(record.createdAt),
                ])
        } catch let failure as SQLiteDatabase.Failure where failure.isConstraintViolation {
            throw .nameTaken(record.name)
        } catch {
            throw .unavailable("\(error)")
        }
    }

    public func account(named name: String) throws(AccountStoreError) -> AccountRecord? {
        let rows: [[SQLiteDatabase.Value]]
        do {
            rows = try database.execute(
                "SELECT name, salt, password_hash, scrypt_n, scrypt_r, scrypt_p, created_at FROM accounts WHERE name = ?", [.text(name)])
        } catch {
            throw .unavailable("\(error)")
        }
        guard let row = rows.first, row.count == 7,
            case let .text(stored) = row[0], case let .blob(salt) = row[1], case let .blob(hash) = row[2],
            case let .int(n) = row[3], case let .int(r) = row[4], case let .int(p) = row[5], case let .int(created) = row[6]
        else { return nil }
        return AccountRecord(
            name: stored, salt: salt, passwordHash: hash,
            parameters: Scrypt.Parameters(n: UInt64(n), r: UInt64(r), p: UInt64(p)), createdAt: created)
    }

    public func nextCredentialSerial() throws(AccountStoreError) -> UInt64 {
        let database = self.database
        let block = Self.serialBlock
        let result: Result<UInt64, AccountStoreError> = serials.withLock { serials in
            if serials.next >= serials.limit {
                do {
                    let rows = try database.execute("UPDATE counters SET value = value + ? WHERE name = 'credential_serial' RETURNING value", [.int(block)])
                    guard case let .int(value)? = rows.first?.first else { return .failure(.unavailable("serial counter missing")) }
                    serials = (UInt64(value - block), UInt64(value))
                } catch {
                    return .failure(.unavailable("\(error)"))
                }
            }
            serials.next += 1
            return .success(serials.next)
        }
        return try result.get()
    }

}
