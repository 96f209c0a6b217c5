//! The canary scan of a PostgreSQL store: everything the database holds,
//! read back through SQL (the demo controls the database's contents, not
//! its files, which belong to the PostgreSQL server's user).
//!
//! Every table of the schema the store uses is read twice: each row as
//! PostgreSQL renders it as text (`SELECT t::text FROM table t`: text and
//! numbers as they are, `bytea` as hex), and each `bytea` column as its raw
//! bytes, so a record's text is found whether it was stored as text, as
//! bytes, or encoded in either.

use medrelay_server::scan::Needles;
use medrelay_server::DatabaseUrl;

/// What the scan read and found.
#[derive(Debug, Default)]
pub(crate) struct DatabaseScan {
    /// Tables read.
    pub(crate) tables: usize,
    /// Rows read.
    pub(crate) rows: u64,
    /// Bytes scanned (row texts and raw `bytea` values).
    pub(crate) bytes: u64,
    /// `table: needle label` of every hit.
    pub(crate) hits: Vec<String>,
}

/// A table or column name as an SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Reads every row of every table in the database's current schema and
/// looks for `needles` in it.
pub(crate) fn scan_database(url: &DatabaseUrl, needles: &Needles) -> Result<DatabaseScan, String> {
    // The store opened this URL already, so it parses: the driver's message
    // names the connection problem, never the URL (or a password in it).
    let mut c = postgres::Client::connect(url.expose(), postgres::NoTls)
        .map_err(|e| format!("connecting to the database for the scan: {e}"))?;
    let sql = |e: postgres::Error| format!("reading the database: {e}");
    let tables: Vec<String> = c
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1",
            &[],
        )
        .map_err(sql)?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    let mut scan = DatabaseScan { tables: tables.len(), ..DatabaseScan::default() };
    for table in &tables {
        let t = ident(table);
        for row in c.query(&format!("SELECT x::text FROM {t} x"), &[]).map_err(sql)? {
            let text: String = row.try_get(0).map_err(sql)?;
            scan.rows += 1;
            scan.bytes += text.len() as u64;
            if let Some(label) = needles.find_in(text.as_bytes()) {
                scan.hits.push(format!("{table}: {label}"));
            }
        }
        let columns: Vec<String> = c
            .query(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 AND data_type = 'bytea'",
                &[table],
            )
            .map_err(sql)?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(sql)?;
        for column in &columns {
            let col = ident(column);
            for row in c.query(&format!("SELECT {col} FROM {t} WHERE {col} IS NOT NULL"), &[]).map_err(sql)? {
                let bytes: Vec<u8> = row.try_get(0).map_err(sql)?;
                scan.bytes += bytes.len() as u64;
                if let Some(label) = needles.find_in(&bytes) {
                    scan.hits.push(format!("{table}.{column}: {label}"));
                }
            }
        }
    }
    Ok(scan)
}

/// The database's name, for the narration (never the whole URL: it may
/// hold a password).
pub(crate) fn database_name(url: &DatabaseUrl) -> String {
    match url.expose().parse::<postgres::Config>() {
        Ok(c) => c.get_dbname().map_or_else(|| "(the user's default)".to_owned(), |d| format!("\"{d}\"")),
        Err(_) => "(unnamed)".to_owned(),
    }
}
