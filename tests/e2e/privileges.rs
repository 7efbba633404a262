use mysql::prelude::Queryable;

use crate::support::Stack;

/// ER_TABLEACCESS_DENIED_ERROR
const ACCESS_DENIED: u16 = 1142;

#[test]
fn the_app_account_can_call_the_procedures_but_not_touch_tables() {
    let stack = Stack::up("privileges", 1);
    let mut app = stack.app_db_conn();

    let hits: Option<u64> = app
        .query_first("CALL read_hits()")
        .expect("EXECUTE is granted");
    assert!(hits.is_some());

    let statements = [
        "SELECT * FROM access_log",
        "SELECT * FROM hit_counter",
        "SELECT * FROM latest_accesses",
        "SELECT * FROM hits_per_instance",
        "INSERT INTO access_log (request_id, client_ip, accessed_at, internal_ip) \
         VALUES ('00000000000000000000000000000000', '1.1.1.1', NOW(), '1.1.1.1')",
        "UPDATE hit_counter SET hits = hits + 1000",
        "DELETE FROM access_log",
        "DELETE FROM hit_counter",
    ];
    for sql in statements {
        match app.query_drop(sql) {
            Err(mysql::Error::MySqlError(e)) => {
                assert_eq!(e.code, ACCESS_DENIED, "{sql}: {}", e.message)
            }
            other => panic!("{sql} was not denied: {other:?}"),
        }
    }
    let denied_ddl = app.query_drop("DROP TABLE access_log");
    assert!(denied_ddl.is_err(), "DROP TABLE was not denied");

    let totals = stack.counter_and_rows();
    assert_eq!(
        totals.counter, totals.rows,
        "nothing changed behind the procedures' back"
    );
}
