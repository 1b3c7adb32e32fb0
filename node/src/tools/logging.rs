//! Tracing setup: human-readable lines by default, JSON lines with `--log-format json`; level
//! from `--verbose`/`--quiet` or `FEDANNO_LOG` (an `EnvFilter` directive). Logs go to stderr so
//! stdout stays clean for `--json` output. Log events carry counts, pseudonyms and reasons,
//! never PHI, paths or key material.
//!
//! Every line is written through [`EscapingWriter`]: a control character, a bidirectional
//! override or any other invisible formatting character inside an event (a peer's notice
//! topic, a refusal reason, an error text) is written as an escape, so no string that came from
//! a peer can end a log line, forge another one, or drive the operator's terminal. Colours are
//! off for the same reason.

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Installs the global subscriber. `verbosity`: −1 quiet (errors), 0 warnings, 1 info,
/// 2 debug, 3+ trace. `FEDANNO_LOG` overrides it.
pub fn init(format: LogFormat, verbosity: i8) {
    let default = match verbosity {
        i8::MIN..=-1 => "error",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("FEDANNO_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(|| EscapingWriter(std::io::stderr()));
    let _ = match format {
        LogFormat::Human => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// A writer for whole formatted log events (the fmt layer writes each event with one
/// `write_all`): every character that could change how the line is displayed or split is
/// replaced by a JSON-style escape (`\n`, `\r`, `\t`, `\u001b`, `\u202e`, …), except the
/// event's final newline. The JSON format escapes control characters itself; this catches the
/// rest there too.
pub struct EscapingWriter<W>(pub W);

impl<W: std::io::Write> std::io::Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .write_all(escape_line(&String::from_utf8_lossy(buf)).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// `text` with every control or invisible formatting character escaped, but a final newline
/// kept.
pub fn escape_line(text: &str) -> String {
    let (body, end) = match text.strip_suffix('\n') {
        Some(b) => (b, "\n"),
        None => (text, ""),
    };
    let mut out = String::with_capacity(body.len() + end.len());
    for c in body.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push_str(end);
    out
}

/// Control characters (C0, DEL, C1) and the invisible formatting characters that reorder or
/// hide text: bidirectional embeddings, overrides and isolates, zero-width characters, the
/// line and paragraph separators and the byte-order mark.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forged_line_and_terminal_escapes_are_written_as_escapes() {
        let forged =
            "notice received topic=t\n2026-01-01T00:00:00Z ERROR forged \u{1b}[31mred\u{202e}\n";
        let line = escape_line(forged);
        assert_eq!(
            line,
            "notice received topic=t\\n2026-01-01T00:00:00Z ERROR forged \\u001b[31mred\\u202e\n"
        );
        assert_eq!(line.matches('\n').count(), 1);
        assert!(!line.contains('\u{1b}'));
        let mut out = Vec::new();
        std::io::Write::write_all(&mut EscapingWriter(&mut out), forged.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), line);
        // Ordinary text, including non-ASCII names, passes unchanged.
        assert_eq!(
            escape_line("Hôpital Saint-Éloi ✓\n"),
            "Hôpital Saint-Éloi ✓\n"
        );
    }
}
