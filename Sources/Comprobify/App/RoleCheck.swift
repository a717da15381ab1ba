import Postgres

/// Refuses to serve as any role row-level security does not hold to the app's
/// rules: a superuser, a role that bypasses it, a role that owns (or is a member
/// of the owner of) a table of the schema, a member of comprobify_auth, whose
/// policies see every tenant's keys, or a member of comprobify_mailer, whose
/// functions hand out every tenant's verification tokens in clear.
public enum RoleCheck {
    public struct Refused: Error, CustomStringConvertible {
        public let description: String
    }

    static let sql: PostgresQuery = """
        SELECT r.rolname::text, r.rolsuper, r.rolbypassrls,
               EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
                          AND pg_has_role(r.oid, c.relowner, 'MEMBER')),
               EXISTS (SELECT 1 FROM pg_roles a WHERE a.rolname = 'comprobify_auth' AND pg_has_role(r.oid, a.oid, 'MEMBER')),
               EXISTS (SELECT 1 FROM pg_roles m WHERE m.rolname = 'comprobify_mailer' AND pg_has_role(r.oid, m.oid, 'MEMBER'))
          FROM pg_roles r WHERE r.rolname = current_user
        """

    public static func verify(pool: ConnectionPool) async throws {
        let row = try await pool.withConnection { try $0.query(RoleCheck.sql)[0] }
        let name = try row.decode(String.self, at: 0)
        let reasons = [
            (try row.decode(Bool.self, at: 1), "it is a superuser"),
            (try row.decode(Bool.self, at: 2), "it bypasses row-level security"),
            (try row.decode(Bool.self, at: 3), "it owns tables of the schema (row-level security does not hold owners by default)"),
            (try row.decode(Bool.self, at: 4), "it is a member of comprobify_auth, whose policies see every tenant's keys"),
            (
                try row.decode(Bool.self, at: 5),
                "it is a member of comprobify_mailer, whose functions hand out every tenant's verification tokens"
            ),
        ].filter(\.0).map(\.1)
        if !reasons.isEmpty {
            throw Refused(
                description: "refusing to serve as role \"\(name)\": \(reasons.joined(separator: "; ")). Connect as comprobify_app."
            )
        }
    }
}
