//! Live membership. The trust store (the consortium root and the newest revocation list)
//! changes while the node runs: `consortium update-revocations` hands the running node a newer
//! list through the control socket, and members pass lists on by gossip (the root's signature
//! is what counts, not who passed it on). Every message in or out checks that its peer is still
//! a member now, certificate unexpired and serial not revoked; a member that lapses is refused,
//! audited and disconnected, and a sweep every [`LAPSE_SWEEP`] drops members whose
//! certificate expired while they were quiet.

use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Duration;

use fedanno_protocol::cert::{CertError, Certificate, CertificateBody, RevocationList, TrustStore};
use fedanno_protocol::wire::Gossip;

use super::AppError;
use super::context::Context;
use super::members::MemberInfo;
use crate::network::kinds::MessageKind;
use crate::site::clock::now;

/// How often members are checked for a certificate that expired while they were quiet.
pub const LAPSE_SWEEP: Duration = Duration::from_secs(2);

/// Why a member stopped being one.
pub(super) enum Lapse {
    /// Its certificate expired (a renewed certificate may bring it back).
    Expired(String),
    /// Its certificate was revoked (banned for [`super::BAN_REVOKED`]; its next proof fails).
    Revoked(String),
}

/// The trust store in force, the newest revocation list as signed by the root (to pass on),
/// and where to keep a newer one.
pub(crate) struct Trust {
    store: RwLock<(TrustStore, Option<RevocationList>)>,
    file: Option<PathBuf>,
}

impl Trust {
    pub(super) fn new(store: TrustStore, file: Option<PathBuf>) -> Self {
        // The list in the file is the one the trust store was loaded with; keep its signed
        // form so it can be passed on.
        let held = store.revocations().map(|b| b.number);
        let list = file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| RevocationList::from_bytes(&b).ok())
            .filter(|l| Some(l.number()) == held);
        Trust {
            store: RwLock::new((store, list)),
            file,
        }
    }

    /// The full check of a certificate presented on `peer`'s connection.
    pub(super) fn check_peer(
        &self,
        cert: &Certificate,
        peer: &[u8],
        now: u64,
    ) -> Result<CertificateBody, CertError> {
        let t = self.store.read().map_err(|_| CertError::Malformed)?;
        t.0.check_peer(cert, peer, now)
    }

    /// Why `m` is no longer a member at `now`, if it is not.
    pub(super) fn lapsed(&self, m: &MemberInfo, now: u64) -> Option<Lapse> {
        if now > m.certificate_expires {
            return Some(Lapse::Expired(format!(
                "{}'s certificate expired at {} during the connection",
                m.site, m.certificate_expires
            )));
        }
        let t = self.store.read().ok()?;
        let revoked = t.0.revocations().is_some_and(|r| r.is_revoked(m.serial));
        revoked.then(|| {
            Lapse::Revoked(format!(
                "{}'s certificate (serial {}) was revoked",
                m.site, m.serial
            ))
        })
    }

    /// Installs `list` if it is newer than the one held: its number, or None for the list
    /// already held. A stale or conflicting list, or one the root did not sign, is an error.
    fn install(&self, list: &RevocationList) -> Result<Option<u64>, CertError> {
        let mut t = self.store.write().map_err(|_| CertError::Malformed)?;
        let held = t.0.revocations().map(|b| b.number);
        // The list held, or an older one a member that missed the newest passed on: nothing
        // to do (a different list under the held number is an error: the root signed two).
        if t.1.as_ref() == Some(list) || held.is_some_and(|h| list.number() < h) {
            return Ok(None);
        }
        t.0.set_revocations(list, now())?;
        t.1 = Some(list.clone());
        Ok(Some(list.number()))
    }

    /// The newest list, as the root signed it.
    fn list(&self) -> Option<RevocationList> {
        self.store.read().ok()?.1.clone()
    }

    /// The newest list's bytes (for a new member's welcome).
    pub(super) fn list_bytes(&self) -> Option<Vec<u8>> {
        self.list().map(|l| l.to_bytes())
    }
}

/// A revocation list file, read only up to the largest list there can be.
fn read_bounded(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let limit = fedanno_protocol::limits::MAX_REVOCATION_LIST_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

impl Context {
    /// Whether `m` is still a member now; if not, it is refused (audited), disconnected and
    /// forgotten (and banned for [`super::BAN_REVOKED`] when revoked).
    pub(crate) async fn still_member(&self, m: &MemberInfo) -> bool {
        let (why, ban) = match self.trust().lapsed(m, now()) {
            None => return true,
            Some(Lapse::Expired(why)) => (why, None),
            Some(Lapse::Revoked(why)) => (why, Some(super::BAN_REVOKED)),
        };
        // Audited first: whoever sees the member gone finds the refusal in the log.
        super::membership::refuse(self, &m.peer, why, ban).await;
        self.remove_member(&m.peer);
        false
    }

    /// Refuses every member that is no longer one (the sweep, and after a new list).
    pub(super) async fn drop_lapsed(&self) {
        for m in self.members().all() {
            self.still_member(&m).await;
        }
    }

    /// A revocation list from the operator (`from` None) or passed on by a member: installed
    /// and kept when newer, revoked members dropped, and passed on to the members. Returns the
    /// list's number when it was newer.
    pub(crate) async fn revocations(&self, bytes: &[u8]) -> Result<Option<u64>, AppError> {
        let list = RevocationList::from_bytes(bytes)
            .map_err(|e| AppError::BadReply(format!("not a revocation list: {e}")))?;
        let installed = self
            .trust()
            .install(&list)
            .map_err(|e| AppError::BadReply(format!("revocation list refused: {e}")))?;
        let Some(number) = installed else {
            return Ok(None);
        };
        if let Some(file) = &self.trust().file
            && let Err(e) = crate::site::files::write_bytes(file, bytes)
        {
            tracing::error!(error = %e, "cannot keep the newer revocation list");
        }
        tracing::info!(number, "installed a newer revocation list");
        self.drop_lapsed().await;
        self.pass_on_revocations().await;
        self.bump();
        Ok(Some(number))
    }

    /// [`Self::revocations`] of `list`, or of the site's list file (what
    /// `consortium update-revocations` just installed).
    pub(super) async fn reload_revocations(
        &self,
        list: Option<Vec<u8>>,
    ) -> Result<Option<u64>, AppError> {
        let bytes = match (list, &self.trust().file) {
            (Some(b), _) => b,
            (None, Some(f)) => read_bounded(f)
                .map_err(|e| AppError::BadReply(format!("cannot read {}: {e}", f.display())))?,
            (None, None) => return Ok(None),
        };
        self.revocations(&bytes).await
    }

    /// Passes our newest revocation list to the members (best effort: a member that misses it
    /// gets it when it next connects to anyone who has it).
    pub(super) async fn pass_on_revocations(&self) {
        let Some(list) = self.trust().list() else {
            return;
        };
        if self.members().len() == 0 || self.identity().fetch_only() {
            return;
        }
        let g = Gossip::Revocations {
            list: list.to_bytes(),
        };
        if let Err(e) = self.publish(MessageKind::Revocations, &g).await {
            tracing::warn!(error = %e, "cannot pass on the revocation list");
        }
    }
}
