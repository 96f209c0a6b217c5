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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use base64::Engine as _;
    use medrelay_server::store::postgres::testing::fresh_database;

    use super::*;

    #[test]
    fn the_scan_finds_text_in_any_column_raw_hex_or_base64_and_counts_what_it_read() {
        let Some(url) = fresh_database() else { return };
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"xx Lithium [Moles/volume] yy");
        c.batch_execute(
            "CREATE TABLE clean (id int, t text, b bytea);
             CREATE TABLE \"odd \"\"name\" (id int, t text, \"a b\" bytea);
             INSERT INTO clean VALUES (1, 'nothing here', '\\x00ff'), (2, NULL, NULL);",
        )
        .unwrap();
        // Raw in a text column; raw in a bytea column (found in its bytes,
        // and as hex in its row's text); base64 inside a bytea column (found
        // in its bytes).
        c.execute(
            "INSERT INTO \"odd \"\"name\" VALUES (1, 'a Hemoglobin A1c b', NULL), (2, NULL, $1), (3, NULL, $2)",
            &[&b"..Synthetic-Alpha..".to_vec(), &b64.into_bytes()],
        )
        .unwrap();
        let mut needles = Needles::new();
        for canary in ["Hemoglobin A1c", "Synthetic-Alpha", "Lithium [Moles/volume]"] {
            needles.text(canary, canary.as_bytes());
            needles.raw(&format!("{canary} (hex)"), hex::encode(canary).as_bytes());
        }
        let scan = scan_database(&DatabaseUrl::new(url.clone()), &needles).unwrap();
        assert_eq!(scan.tables, 2);
        assert_eq!(scan.rows, 5);
        let mut hits = scan.hits.clone();
        hits.sort();
        assert_eq!(
            hits,
            [
                "odd \"name.a b: Lithium [Moles/volume] (base64)",
                "odd \"name.a b: Synthetic-Alpha",
                "odd \"name: Hemoglobin A1c",
                "odd \"name: Synthetic-Alpha (hex)",
            ]
            .map(String::from),
            "{:?}",
            scan.hits
        );
        // Without those rows, nothing is found.
        c.batch_execute("DELETE FROM \"odd \"\"name\"").unwrap();
        let scan = scan_database(&DatabaseUrl::new(url), &needles).unwrap();
        assert!(scan.hits.is_empty(), "{:?}", scan.hits);
        assert_eq!(scan.rows, 2);
    }

    #[test]
    fn the_narration_names_the_database_and_never_the_password() {
        let url = DatabaseUrl::new("postgres://medrelay:s3cret@db.example:5432/clinic");
        assert_eq!(database_name(&url), "\"clinic\"");
        let url = DatabaseUrl::new("host=/run/postgresql user=medrelay password=s3cret dbname=records");
        assert_eq!(database_name(&url), "\"records\"");
    }
}
