//! A procedure's one-number answer, checked: a reply of another shape (a
//! procedure re-applied with an extra column, say) is an error, never a panic.

use mysql::Row;

use super::DbError;

/// The single unsigned number `call` answered with.
pub fn single_number(call: &str, row: Option<Row>) -> Result<u64, DbError> {
    let row = row.ok_or_else(|| DbError::UnexpectedReply(format!("{call} returned no row")))?;
    let columns = row.len();
    mysql::from_row_opt::<u64>(row).map_err(|_| {
        DbError::UnexpectedReply(format!(
            "{call} returned {columns} column(s), not one unsigned number"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Rows of other shapes come from a real server: tests/e2e/outages.rs
    // re-creates record_hits with an extra column.
    #[test]
    fn no_row_is_an_unexpected_reply() {
        assert!(matches!(
            single_number("read_hits", None),
            Err(DbError::UnexpectedReply(message)) if message.contains("read_hits")
        ));
    }
}
