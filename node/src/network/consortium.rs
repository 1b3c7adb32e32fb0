//! Consortium files. The governance side (`fedanno consortium new|admit|revoke`) keeps a root
//! directory: `root.pk8` (the root Ed25519 key, mode 0600), `consortium.info` (the public name
//! and root key every site imports), `ledger.json` (serials issued, revocations) and `crl.bin`
//! (the signed revocation list). The site side (`fedanno node request`, `consortium join`)
//! keeps `<site>/consortium/`: `consortium.info`, `certificate.bin` (checked to match the
//! site's own keys) and `crl.bin`; and the site's libp2p identity in `<site>/keys/libp2p.key`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use fedanno_protocol::cert::{
    CertError, CertRequest, Certificate, CertificateBody, ConsortiumInfo, RevocationBody,
    RevocationList, Revoked, Role, TrustStore,
};
use fedanno_protocol::ids::SiteId;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};

use crate::site::clock::now;
use crate::site::identity::{self, SiteKeys};
use libp2p::PeerId;

pub const INFO_FILE: &str = "consortium.info";
pub const ROOT_KEY_FILE: &str = "root.pk8";
pub const LEDGER_FILE: &str = "ledger.json";
pub const CRL_FILE: &str = "crl.bin";
pub const SITE_DIR: &str = "consortium";
pub const CERT_FILE: &str = "certificate.bin";
pub const LIBP2P_KEY_FILE: &str = "libp2p.key";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ledger {
    pub next_serial: u64,
    pub crl_number: u64,
    pub issued: Vec<IssuedEntry>,
    pub revoked: Vec<RevokedEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuedEntry {
    pub serial: u64,
    pub site_id: String,
    pub roles: Vec<String>,
    pub not_after: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedEntry {
    pub serial: u64,
    pub site_id: String,
    pub reason: String,
    pub revoked_at: u64,
}

fn write_new_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(f.sync_all()?)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::site::files::write_bytes(path, bytes).context("cannot write a consortium file")
}

/// Which of the site's keys the certificate body does not name, if any: the signing key, the
/// sealing key or the libp2p peer id. A site runs only with the very key set it was admitted
/// with, so a stolen libp2p key alone does not make a member.
pub fn key_mismatch(
    body: &CertificateBody,
    keys: &SiteKeys,
    peer: &PeerId,
) -> Option<&'static str> {
    if body.signing_key.as_slice() != keys.signing.public_key().as_ref() {
        Some("signing key")
    } else if body.sealing_key != *x25519_dalek::PublicKey::from(&keys.sealing).as_bytes() {
        Some("sealing key")
    } else if body.peer_id != peer.to_bytes() {
        Some("peer id (libp2p key)")
    } else {
        None
    }
}

/// Everything a consortium root directory holds.
pub struct Root {
    pub dir: PathBuf,
    pub key: Ed25519KeyPair,
    pub info: ConsortiumInfo,
    pub ledger: Ledger,
}

/// `consortium new`: a fresh root key and the public info file.
pub fn new_root(name: &str, dir: &Path) -> Result<ConsortiumInfo> {
    std::fs::create_dir_all(dir)?;
    ensure!(
        !dir.join(ROOT_KEY_FILE).exists(),
        "{} already holds a consortium root; refusing to overwrite it",
        dir.display()
    );
    let rng = SystemRandom::new();
    let pk8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| anyhow::anyhow!("random number generator failed"))?;
    let key = Ed25519KeyPair::from_pkcs8(pk8.as_ref())
        .map_err(|_| anyhow::anyhow!("bad generated key"))?;
    let info = ConsortiumInfo::new(name, &key)
        .map_err(|e| anyhow::anyhow!("invalid consortium name: {e}"))?;
    write_new_secret(&dir.join(ROOT_KEY_FILE), pk8.as_ref())?;
    write_atomic(&dir.join(INFO_FILE), info.to_text().as_bytes())?;
    let root = Root {
        dir: dir.into(),
        key,
        info: info.clone(),
        ledger: Ledger {
            next_serial: 1,
            ..Default::default()
        },
    };
    root.write_crl()?;
    Ok(info)
}

impl Root {
    pub fn open(dir: &Path) -> Result<Root> {
        let pk8 = std::fs::read(dir.join(ROOT_KEY_FILE))
            .with_context(|| format!("{} is not a consortium root directory", dir.display()))?;
        let key = Ed25519KeyPair::from_pkcs8(&pk8)
            .map_err(|_| anyhow::anyhow!("{} is malformed", ROOT_KEY_FILE))?;
        let info = read_info(&dir.join(INFO_FILE))?;
        let ledger: Ledger =
            serde_json::from_str(&std::fs::read_to_string(dir.join(LEDGER_FILE))?)?;
        Ok(Root {
            dir: dir.into(),
            key,
            info,
            ledger,
        })
    }

    fn save_ledger(&self) -> Result<()> {
        write_atomic(
            &self.dir.join(LEDGER_FILE),
            serde_json::to_string_pretty(&self.ledger)?.as_bytes(),
        )
    }

    fn write_crl(&self) -> Result<()> {
        let body = RevocationBody {
            version: fedanno_protocol::cert::CRL_VERSION,
            consortium: self.info.name.clone(),
            number: self.ledger.crl_number,
            issued_at: now(),
            revoked: self
                .ledger
                .revoked
                .iter()
                .map(|r| {
                    Ok(Revoked {
                        serial: r.serial,
                        site_id: SiteId::new(r.site_id.clone())?,
                        reason: r.reason.clone(),
                        revoked_at: r.revoked_at,
                    })
                })
                .collect::<Result<_, fedanno_protocol::ids::IdError>>()?,
        };
        write_atomic(
            &self.dir.join(CRL_FILE),
            &RevocationList::issue(&body, &self.key).to_bytes(),
        )?;
        self.save_ledger()
    }

    /// `consortium admit`: verifies a site's request and issues its certificate, valid from
    /// five minutes ago (clock tolerance) for `valid_days` days.
    pub fn admit(
        &mut self,
        request: &[u8],
        roles: &[Role],
        valid_days: u64,
    ) -> Result<(Certificate, CertificateBody)> {
        self.admit_at(request, roles, valid_days, None)
    }

    /// [`Root::admit`] with an explicit start of validity (Unix seconds), e.g. a certificate
    /// issued ahead of a key rotation. `None`: five minutes ago.
    pub fn admit_at(
        &mut self,
        request: &[u8],
        roles: &[Role],
        valid_days: u64,
        not_before: Option<u64>,
    ) -> Result<(Certificate, CertificateBody)> {
        let req = CertRequest::from_bytes(request)
            .map_err(|e| anyhow::anyhow!("not a certificate request: {e}"))?;
        let body = req
            .verify()
            .map_err(|e| anyhow::anyhow!("the request does not verify: {e}"))?;
        ensure!(!roles.is_empty(), "a certificate needs at least one role");
        ensure!(
            (1..=3650).contains(&valid_days),
            "--valid-days must be 1 to 3650"
        );
        let serial = self.ledger.next_serial.max(1);
        let nb = not_before.unwrap_or_else(|| now().saturating_sub(300));
        let body = CertificateBody::from_request(
            &body,
            &self.info.name,
            serial,
            roles,
            nb,
            nb + valid_days * 86_400,
        );
        let cert = Certificate::issue(&body, &self.key);
        self.ledger.next_serial = serial + 1;
        self.ledger.issued.push(IssuedEntry {
            serial,
            site_id: body.site_id.to_string(),
            roles: body.roles.iter().map(|r| r.as_str().to_string()).collect(),
            not_after: body.not_after,
        });
        self.save_ledger()?;
        Ok((cert, body))
    }

    /// `consortium revoke`: adds every certificate of a site (or one serial) to the list.
    pub fn revoke(
        &mut self,
        serial: Option<u64>,
        site: Option<&str>,
        reason: &str,
    ) -> Result<Vec<u64>> {
        let hits: Vec<IssuedEntry> = self
            .ledger
            .issued
            .iter()
            .filter(|i| {
                serial.is_some_and(|s| s == i.serial) || site.is_some_and(|s| s == i.site_id)
            })
            .filter(|i| !self.ledger.revoked.iter().any(|r| r.serial == i.serial))
            .cloned()
            .collect();
        ensure!(!hits.is_empty(), "no unrevoked certificate matches");
        for i in &hits {
            self.ledger.revoked.push(RevokedEntry {
                serial: i.serial,
                site_id: i.site_id.clone(),
                reason: reason.into(),
                revoked_at: now(),
            });
        }
        self.ledger.crl_number += 1;
        self.write_crl()?;
        Ok(hits.iter().map(|i| i.serial).collect())
    }
}

pub fn read_info(path: &Path) -> Result<ConsortiumInfo> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    ConsortiumInfo::from_text(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a consortium info file: {e}", path.display()))
}

/// The site's libp2p identity (created on first use, mode 0600).
pub fn libp2p_key(site_dir: &Path) -> Result<crate::network::p2p::Keypair> {
    let path = site_dir
        .join(crate::site::config::KEYS_DIR)
        .join(LIBP2P_KEY_FILE);
    if !path.exists() {
        let k = crate::network::p2p::Keypair::generate_ed25519();
        let bytes = k
            .to_protobuf_encoding()
            .map_err(|e| anyhow::anyhow!("cannot encode the libp2p key: {e}"))?;
        write_new_secret(&path, &bytes)?;
    }
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    crate::network::p2p::Keypair::from_protobuf_encoding(&bytes)
        .map_err(|_| anyhow::anyhow!("{} is malformed", path.display()))
}

/// Loads the site's libp2p identity of a site that has joined: unlike [`libp2p_key`] it never
/// creates one, since a new key would not match the peer id the certificate names.
pub fn existing_libp2p_key(site_dir: &Path) -> Result<crate::network::p2p::Keypair> {
    let path = site_dir
        .join(crate::site::config::KEYS_DIR)
        .join(LIBP2P_KEY_FILE);
    let bytes = std::fs::read(&path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the key file {}: {e}. The node must run as the account that owns the site directory; restore the file from the site's offline backup of keys/ (a new key would not match this site's certificate)",
            path.display()
        )
    })?;
    crate::network::p2p::Keypair::from_protobuf_encoding(&bytes).map_err(|_| {
        anyhow::anyhow!(
            "the key file {} is malformed: restore it from the site's offline backup of keys/",
            path.display()
        )
    })
}

/// A duration for people: seconds, minutes, hours or days.
fn duration(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs / 60),
        7200..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

/// An operator's explanation of why a certificate does not verify now: what is wrong, the
/// file, and what to do (clock problems included).
pub fn certificate_problem(path: &Path, e: &CertError, now: u64) -> String {
    let t = |s: u64| crate::site::calendar::rfc3339(s as i64);
    match e {
        CertError::NotYetValid { not_before } => format!(
            "the certificate {} is not valid before {} but this machine's clock says {} ({} earlier). \
             If the certificate was issued just now, this machine's clock is wrong (behind): check its time \
             synchronisation (`timedatectl status`, NTP or chrony) and start again; otherwise wait until {}",
            path.display(),
            t(*not_before),
            t(now),
            duration(not_before.saturating_sub(now)),
            t(*not_before)
        ),
        CertError::Expired { not_after } => format!(
            "the certificate {} expired at {} (this machine's clock says {}). Send a new request \
             (`fedanno node request --out site.req`) to the consortium and install the new certificate \
             with `fedanno consortium join`; if that is not the current date and time, this machine's clock \
             is wrong: check its time synchronisation (`timedatectl status`, NTP or chrony)",
            path.display(),
            t(*not_after),
            t(now)
        ),
        other => format!(
            "the certificate {} does not verify: {other}. Install the certificate the consortium issued \
             for this site with `fedanno consortium join`",
            path.display()
        ),
    }
}

/// `node request`: the site's signed certificate request.
pub fn request(site_dir: &Path, site_id: &SiteId, display_name: &str) -> Result<Vec<u8>> {
    let keys = identity::load(&site_dir.join(crate::site::config::KEYS_DIR))?;
    let peer = libp2p_key(site_dir)?.public().to_peer_id();
    let sealing = *x25519_dalek::PublicKey::from(&keys.sealing).as_bytes();
    Ok(CertRequest::new(
        site_id.clone(),
        display_name,
        &peer.to_bytes(),
        sealing,
        &keys.signing,
        now(),
    )
    .to_bytes())
}

/// `consortium join`: installs the consortium info, this site's certificate and the
/// revocation list, after checking that the certificate is this site's.
pub fn join(
    site_dir: &Path,
    site_id: &SiteId,
    info: &Path,
    cert: &Path,
    crl: Option<&Path>,
) -> Result<CertificateBody> {
    let info_v = read_info(info)?;
    let cert_bytes =
        std::fs::read(cert).with_context(|| format!("cannot read {}", cert.display()))?;
    let certificate = Certificate::from_bytes(&cert_bytes)
        .map_err(|e| anyhow::anyhow!("{} is not a certificate: {e}", cert.display()))?;
    let body = certificate
        .verify(&info_v, now())
        .map_err(|e| anyhow::anyhow!("{}", certificate_problem(cert, &e, now())))?;
    let keys = identity::load(&site_dir.join(crate::site::config::KEYS_DIR))?;
    ensure!(
        &body.site_id == site_id,
        "the certificate is for site {}, not {}",
        body.site_id,
        site_id
    );
    let peer = libp2p_key(site_dir)?.public().to_peer_id();
    if let Some(which) = key_mismatch(&body, &keys, &peer) {
        bail!("the certificate names another {which} than this site's");
    }
    let dir = site_dir.join(SITE_DIR);
    std::fs::create_dir_all(&dir)?;
    write_atomic(&dir.join(INFO_FILE), info_v.to_text().as_bytes())?;
    write_atomic(&dir.join(CERT_FILE), &cert_bytes)?;
    if let Some(crl) = crl {
        install_crl(site_dir, &info_v, crl)?;
    }
    Ok(body)
}

/// Installs a newer revocation list (an older one is refused).
pub fn install_crl(site_dir: &Path, info: &ConsortiumInfo, crl: &Path) -> Result<u64> {
    let bytes = std::fs::read(crl).with_context(|| format!("cannot read {}", crl.display()))?;
    let list = RevocationList::from_bytes(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is not a revocation list: {e}", crl.display()))?;
    let mut trust = TrustStore::new(info.clone());
    if let Some(current) = load_crl(site_dir)? {
        trust
            .set_revocations(&current, now())
            .map_err(|e| anyhow::anyhow!("installed revocation list: {e}"))?;
    }
    trust
        .set_revocations(&list, now())
        .map_err(|e| anyhow::anyhow!("revocation list refused: {e}"))?;
    write_atomic(&site_dir.join(SITE_DIR).join(CRL_FILE), &bytes)?;
    Ok(list.number())
}

fn load_crl(site_dir: &Path) -> Result<Option<RevocationList>> {
    let p = site_dir.join(SITE_DIR).join(CRL_FILE);
    if !p.exists() {
        return Ok(None);
    }
    let list = RevocationList::from_bytes(&std::fs::read(&p)?)
        .map_err(|e| anyhow::anyhow!("{} is malformed: {e}", p.display()))?;
    Ok(Some(list))
}

/// The site's membership: consortium, own certificate, and trust store with revocations.
pub struct Membership {
    pub info: ConsortiumInfo,
    pub certificate: Certificate,
    pub body: CertificateBody,
    pub trust: TrustStore,
}

pub fn load_membership(site_dir: &Path) -> Result<Membership> {
    let dir = site_dir.join(SITE_DIR);
    if !dir.join(CERT_FILE).exists() {
        bail!(
            "this site has not joined a consortium: run `fedanno node request`, have the consortium admit it, then `fedanno consortium join`"
        );
    }
    let info = read_info(&dir.join(INFO_FILE))?;
    let cert_path = dir.join(CERT_FILE);
    let bytes = std::fs::read(&cert_path).with_context(|| {
        format!(
            "cannot read this site's certificate {}",
            cert_path.display()
        )
    })?;
    let certificate = Certificate::from_bytes(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "this site's certificate {} is malformed ({e}): install the certificate the consortium issued again with `fedanno consortium join`",
            cert_path.display()
        )
    })?;
    let body = certificate
        .verify(&info, now())
        .map_err(|e| anyhow::anyhow!("{}", certificate_problem(&cert_path, &e, now())))?;
    let mut trust = TrustStore::new(info.clone());
    if let Some(crl) = load_crl(site_dir)? {
        trust
            .set_revocations(&crl, now())
            .map_err(|e| anyhow::anyhow!("revocation list: {e}"))?;
        ensure!(
            !crl.is_revoked(body.serial),
            "this site's own certificate is revoked"
        );
    }
    Ok(Membership {
        info,
        certificate,
        body,
        trust,
    })
}
