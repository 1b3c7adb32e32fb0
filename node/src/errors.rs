//! How errors are told to people: one line, each cause once.

/// An error and its causes, `: `-separated, leaving out a cause whose text the message
/// before it already contains (errors that print their source, as most here do, would
/// otherwise say everything twice).
pub fn chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    let mut last = out.clone();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !last.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        last = text;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[derive(Debug, thiserror::Error)]
    #[error("not found: {0}")]
    struct Inner(&'static str);

    #[derive(Debug, thiserror::Error)]
    #[error("file.nii: {source}")]
    struct Outer {
        source: Inner,
    }

    #[test]
    fn a_cause_already_in_its_message_is_said_once() {
        let e = anyhow::Error::new(Outer { source: Inner("x") });
        assert_eq!(chain(&e), "file.nii: not found: x");
        let e = anyhow::Error::new(Inner("y")).context("importing");
        assert_eq!(chain(&e), "importing: not found: y");
    }
}
