//! CSV tables as spreadsheets and our exports write them, read and written with the `csv`
//! crate: RFC 4180 quoting (commas, quotes and line breaks inside quoted fields), CRLF or LF
//! line ends, a UTF-8 byte-order mark, blank lines skipped, fields trimmed. Columns are found
//! by their header name, so a file may carry more columns than a reader needs (an export's
//! `confidence` and `scheme` feed `metrics agreement` as they are) and in any order.

use std::collections::HashMap;

/// A table: its header and its rows, each with the line it starts on.
#[derive(Debug)]
pub struct Table {
    index: HashMap<String, usize>,
    header: Vec<String>,
    rows: Vec<(u64, csv::StringRecord)>,
}

/// One row, its fields looked up by column name.
pub struct Row<'a> {
    pub line: u64,
    table: &'a Table,
    record: &'a csv::StringRecord,
}

impl<'a> Row<'a> {
    /// The field of column `name`: empty when the table has no such column.
    pub fn get(&self, name: &str) -> &'a str {
        self.table
            .index
            .get(name)
            .and_then(|&i| self.record.get(i))
            .unwrap_or("")
    }
}

impl Table {
    /// Parses `text`; the first non-blank line is the header (names compared in lower case).
    /// Every row must have the header's number of fields.
    pub fn parse(text: &str) -> Result<Table, String> {
        let text = text.trim_start_matches('\u{feff}');
        let mut r = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let header: Vec<String> = r
            .headers()
            .map_err(|e| describe(&e))?
            .iter()
            .map(str::to_ascii_lowercase)
            .collect();
        let mut index = HashMap::new();
        for (i, name) in header.iter().enumerate() {
            if !name.is_empty() && index.insert(name.clone(), i).is_some() {
                return Err(format!("the header names the column {name:?} twice"));
            }
        }
        let mut rows = Vec::new();
        for record in r.records() {
            let record = record.map_err(|e| describe(&e))?;
            if record.iter().all(str::is_empty) {
                continue;
            }
            let line = record.position().map_or(0, csv::Position::line);
            rows.push((line, record));
        }
        Ok(Table {
            index,
            header,
            rows,
        })
    }

    /// Checks that the header names every column of `required`.
    pub fn require(&self, required: &[&str]) -> Result<(), String> {
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|c| !self.index.contains_key(*c))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(format!(
            "the header must name the columns {} (found {}; missing {})",
            required.join(","),
            self.header.join(","),
            missing.join(",")
        ))
    }

    pub fn has(&self, column: &str) -> bool {
        self.index.contains_key(column)
    }

    pub fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|(line, record)| Row {
            line: *line,
            table: self,
            record,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// A csv error in words, with its line when it has one (never the field's content).
fn describe(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => format!(
            "line {}: {len} fields where the header has {expected_len}",
            pos.as_ref().map_or(0, csv::Position::line)
        ),
        csv::ErrorKind::Utf8 { pos, .. } => format!(
            "line {}: not UTF-8",
            pos.as_ref().map_or(0, csv::Position::line)
        ),
        _ => format!("not a CSV table ({e})"),
    }
}

/// Writes rows as CSV (quoted where needed, LF line ends).
pub fn write(header: &[&str], rows: &[Vec<String>]) -> Result<String, String> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record(header).map_err(|e| e.to_string())?;
    for r in rows {
        w.write_record(r).map_err(|e| e.to_string())?;
    }
    let bytes = w.into_inner().map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreadsheet_csv_reads_like_plain_csv() {
        let plain = "unit,rater,value\nu1,r1,4A\nu2,r1,3\n";
        let excel = "\u{feff}Unit,Rater,Value\r\n\"u1\",r1,\"4A\"\r\n\r\nu2, r1 ,3\r\n";
        for text in [plain, excel] {
            let t = Table::parse(text).unwrap();
            t.require(&["unit", "rater", "value"]).unwrap();
            let got: Vec<(u64, String)> = t
                .rows()
                .map(|r| {
                    (
                        r.line,
                        format!("{}|{}|{}", r.get("unit"), r.get("rater"), r.get("value")),
                    )
                })
                .collect();
            assert_eq!(got.len(), 2, "{got:?}");
            assert_eq!(got[0].1, "u1|r1|4A");
            assert_eq!(got[1].1, "u2|r1|3");
        }
        // Quoted commas and quotes; extra and reordered columns.
        let t = Table::parse(
            "value,scheme,unit,rater,note\n\"4B\",bi-rads,\"u, 1\",\"Dr \"\"A\"\"\",x\n",
        )
        .unwrap();
        let r = t.rows().next().unwrap();
        assert_eq!(
            (r.get("unit"), r.get("rater"), r.get("scheme")),
            ("u, 1", "Dr \"A\"", "bi-rads")
        );
        assert_eq!(r.get("confidence"), "");
        // What is wrong is named.
        let e = Table::parse("unit,rater\nu1\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("1 fields"), "{e}");
        let e = Table::parse("unit,value\nu1,2\n")
            .unwrap()
            .require(&["unit", "rater", "value"])
            .unwrap_err();
        assert!(e.contains("missing rater"), "{e}");
        assert!(Table::parse("a,a\n1,2\n").is_err());
    }

    #[test]
    fn what_is_written_reads_back() {
        let rows = vec![vec!["u, 1".to_string(), "r\"1".into(), "4B".into()]];
        let text = write(&["unit", "rater", "value"], &rows).unwrap();
        let t = Table::parse(&text).unwrap();
        let r = t.rows().next().unwrap();
        assert_eq!(
            (r.get("unit"), r.get("rater"), r.get("value")),
            ("u, 1", "r\"1", "4B")
        );
    }
}
