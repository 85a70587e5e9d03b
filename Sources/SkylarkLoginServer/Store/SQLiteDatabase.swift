import CSQLite
import Synchronization

/// A small owner of one SQLite connection. All access goes through one mutex, so the connection
/// is used by one thread at a time; the handle is closed exactly once in `deinit`.
final class SQLiteDatabase: Sendable {
    struct Failure: Error, CustomStringConvertible {
        let code: Int32
        let message: String
        var description: String { "SQLite error \(code): \(message)" }
        var isConstraintViolation: Bool { code & 0xff == SQLITE_CONSTRAINT }
    }

    private let handle: Mutex<OpaquePointer>

    init(path: String) throws {
        var db: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close(db)
            throw Failure(code: rc, message: "\(path): \(message)")
        }
        sqlite3_busy_timeout(db, 5000)
        handle = Mutex(db)
    }

    deinit {
        handle.withLock { _ = sqlite3_close($0) }
    }

    enum Value {
        case int(Int64)
        case text(String)
        case blob([UInt8])
        case null
    }

    /// Runs one statement with `bindings`; returns every row as an array of column values.
    @discardableResult
    func execute(_ sql: String, _ bindings: [Value] = []) throws -> [[Value]] {
        try handle.withLock { db in try Self.run(db, sql, bindings) }
    }

    /// Runs several statements with no bindings (schema, pragmas).
    func executeScript(_ sql: String) throws {
        try handle.withLock { db in
            var error: UnsafeMutablePointer<CChar>?
            if sqlite3_exec(db, sql, nil, nil, &error) != SQLITE_OK {
                let message = error.map { String(cString: $0) } ?? "unknown"
                sqlite3_free(error)
                throw Failure(code: sqlite3_errcode(db), message: message)
            }
        }
    }

    private static func run(_ db: OpaquePointer, _ sql: String, _ bindings: [Value]) throws -> [[Value]] {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &statement, nil) == SQLITE_OK, let statement else {
            throw Failure(code: sqlite3_errcode(db), message: String(cString: sqlite3_errmsg(db)))
        }
        defer { sqlite3_finalize(statement) }
        // SQLITE_TRANSIENT: SQLite copies the bound bytes before this call returns.
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        for (offset, value) in bindings.enumerated() {
            let index = Int32(offset + 1)
            let rc: Int32
            switch value {
            case let .int(v): rc = sqlite3_bind_int64(statement, index, v)
            case let .text(v): rc = sqlite3_bind_text(statement, index, v, -1, transient)
            case let .blob(v): rc = v.withUnsafeBytes { sqlite3_bind_blob(statement, index, $0.baseAddress, Int32($0.count), transient) }
            case .null: rc = sqlite3_bind_null(statement, index)
            }
            guard rc == SQLITE_OK else { throw Failure(code: rc, message: String(cString: sqlite3_errmsg(db))) }
        }
        var rows: [[Value]] = []
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw Failure(code: sqlite3_extended_errcode(db), message: String(cString: sqlite3_errmsg(db))) }
            var row: [Value] = []
            for column in 0..<sqlite3_column_count(statement) {
                switch sqlite3_column_type(statement, column) {
                case SQLITE_INTEGER: row.append(.int(sqlite3_column_int64(statement, column)))
                case SQLITE_TEXT: row.append(.text(String(cString: sqlite3_column_text(statement, column))))
                case SQLITE_BLOB:
                    let count = Int(sqlite3_column_bytes(statement, column))
                    let bytes = sqlite3_column_blob(statement, column).map { Array(UnsafeRawBufferPointer(start: $0, count: count)) } ?? []
                    row.append(.blob(bytes))
                default: row.append(.null)
                }
            }
            rows.append(row)
        }
        return rows
    }
}
