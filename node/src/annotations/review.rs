//! Review states of an annotation version: draft → submitted → approved or rejected. A rejected
//! or approved version is final; a correction is a new version, which starts as a draft.

vocabulary! {
    pub enum ReviewState("review state") {
        Draft = "draft",
        Submitted = "submitted",
        Approved = "approved",
        Rejected = "rejected",
    }
}

impl ReviewState {
    /// Whether a version may move from `self` to `to`.
    pub fn can_move_to(self, to: ReviewState) -> bool {
        use ReviewState::*;
        matches!(
            (self, to),
            (Draft, Submitted) | (Submitted, Approved) | (Submitted, Rejected) | (Submitted, Draft)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::ReviewState::*;

    #[test]
    fn transitions() {
        assert!(Draft.can_move_to(Submitted));
        assert!(Submitted.can_move_to(Approved));
        assert!(Submitted.can_move_to(Rejected));
        assert!(Submitted.can_move_to(Draft));
        assert!(!Draft.can_move_to(Approved));
        assert!(!Approved.can_move_to(Rejected));
        assert!(!Rejected.can_move_to(Submitted));
        for s in [Draft, Submitted, Approved, Rejected] {
            assert_eq!(super::ReviewState::parse(s.as_str()), Some(s));
        }
    }
}
