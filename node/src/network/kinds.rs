//! The vocabulary of messages: every kind of message a site sends, which its policy rules name
//! and its audit log records. Adding a message kind starts here: add the variant and its name,
//! and the compiler lists every match that must decide what to do with it.

vocabulary! {
    /// A kind of message this site sends, as policy rules (`kinds = [...]`) and audit entries
    /// name it.
    pub enum MessageKind("message kind") {
        /// A membership proof (our certificate).
        Hello = "hello",
        /// Our signed audit checkpoint (asked for, or published).
        Checkpoint = "checkpoint",
        /// A request to co-sign our checkpoint, or our co-signature.
        Witness = "witness",
        /// A signed receipt for a message we logged.
        Receipt = "receipt",
        /// A refusal with its reason code.
        Refusal = "refusal",
        /// The consortium root's revocation list, passed on to the members.
        Revocations = "revocations",
        /// Where members listen (dialing hints), shared with the members.
        Addresses = "addresses",
        /// A text notice to one member or to the consortium.
        Notice = "notice",
        /// A coordinator's announcement of a reader study (its signed manifest).
        StudyAnnouncement = "study-announcement",
        /// A site's decision to join or decline a reader study.
        StudyDecision = "study-decision",
        /// A site's counts of assigned cases and reads per reader kind.
        AnnotationMetadata = "annotation-metadata",
        /// A secure-aggregation roster, round key or input request.
        SecaggKeys = "secagg-keys",
        /// A site's signed statement whether it submitted under a roster.
        SecaggStatement = "secagg-statement",
        /// A site's masked vector for a secure sum.
        MaskedVector = "masked-vector",
        /// A released result (consensus or report) of a reader study.
        Result = "result",
        /// Audit heads and proofs for an auditor (checkpoint, co-signatures, inclusion and
        /// consistency proofs), and an auditor's request for them.
        AuditProof = "audit-proof",
        /// Audit entries for an auditor (those outside its scope withheld), and an auditor's
        /// request for them.
        AuditEntries = "audit-entries",
    }
}

/// How the audit log names a message that arrived: a request or gossip by its kind, a
/// response to one of ours as `response`, a reader-study request as `study`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    Kind(MessageKind),
    Response,
    ReaderStudy,
}

impl Arrival {
    pub fn as_str(self) -> &'static str {
        match self {
            Arrival::Kind(k) => k.as_str(),
            Arrival::Response => "response",
            Arrival::ReaderStudy => "study",
        }
    }
}
