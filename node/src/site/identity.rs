//! The site's key material: the Ed25519 signing key, the X25519 sealing key and the 32-byte
//! pseudonymisation secret. This module owns creating them (mode 0600, never overwriting),
//! loading them, and keeping them out of logs: no type here implements `Debug` with key bytes,
//! and secret bytes are zeroized on drop.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use thiserror::Error;
use zeroize::Zeroizing;

/// File names inside `<site>/keys/`.
pub const SIGNING_KEY_FILE: &str = "signing.pk8";
pub const SIGNING_PUB_FILE: &str = "signing.pub";
pub const SEALING_KEY_FILE: &str = "sealing.key";
pub const SEALING_PUB_FILE: &str = "sealing.pub";
pub const PSEUDONYM_SECRET_FILE: &str = "pseudonym.key";

#[derive(Debug, Error)]
pub enum IdentityError {
    #[error("key file {0} already exists: refusing to overwrite a site's keys")]
    Exists(PathBuf),
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} is readable by other users (mode {mode:o}); run `chmod 600` on it")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("key file {0} is malformed")]
    Malformed(PathBuf),
    #[error("the operating system's random number generator failed")]
    Random,
}

/// The 32-byte pseudonymisation secret. All pseudonyms of the site derive from it.
pub struct PseudonymSecret(Zeroizing<[u8; 32]>);

impl PseudonymSecret {
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    #[cfg(test)]
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(Zeroizing::new(b))
    }
}

impl std::fmt::Debug for PseudonymSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymSecret(<redacted>)")
    }
}

/// The site's loaded keys.
pub struct SiteKeys {
    pub signing: Ed25519KeyPair,
    pub sealing: x25519_dalek::StaticSecret,
    pub pseudonym: PseudonymSecret,
}

impl std::fmt::Debug for SiteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteKeys")
            .field("signing_public", &hex(self.signing.public_key().as_ref()))
            .field(
                "sealing_public",
                &hex(x25519_dalek::PublicKey::from(&self.sealing).as_bytes()),
            )
            .finish_non_exhaustive()
    }
}

/// Public halves, safe to print and share.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PublicKeys {
    pub signing: String,
    pub sealing: String,
}

impl SiteKeys {
    pub fn public(&self) -> PublicKeys {
        PublicKeys {
            signing: hex(self.signing.public_key().as_ref()),
            sealing: hex(x25519_dalek::PublicKey::from(&self.sealing).as_bytes()),
        }
    }
}

/// Creates a fresh set of keys in `dir` (created if needed, mode 0700). Fails without touching
/// anything if any key file already exists.
pub fn generate(dir: &Path) -> Result<PublicKeys, IdentityError> {
    for name in [SIGNING_KEY_FILE, SEALING_KEY_FILE, PSEUDONYM_SECRET_FILE] {
        let p = dir.join(name);
        if p.exists() {
            return Err(IdentityError::Exists(p));
        }
    }
    fs::create_dir_all(dir).map_err(|source| IdentityError::Write {
        path: dir.into(),
        source,
    })?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
        IdentityError::Write {
            path: dir.into(),
            source,
        }
    })?;

    let rng = SystemRandom::new();
    let pk8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| IdentityError::Random)?;
    let pk8 = Zeroizing::new(pk8.as_ref().to_vec());
    let signing =
        Ed25519KeyPair::from_pkcs8(&pk8).map_err(|_| IdentityError::Malformed(dir.into()))?;

    let mut sealing_bytes = Zeroizing::new([0u8; 32]);
    rng.fill(sealing_bytes.as_mut())
        .map_err(|_| IdentityError::Random)?;
    let sealing = x25519_dalek::StaticSecret::from(*sealing_bytes);

    let mut pseudonym = Zeroizing::new([0u8; 32]);
    rng.fill(pseudonym.as_mut())
        .map_err(|_| IdentityError::Random)?;

    write_secret(&dir.join(SIGNING_KEY_FILE), &pk8)?;
    write_secret(&dir.join(SEALING_KEY_FILE), sealing_bytes.as_ref())?;
    write_secret(&dir.join(PSEUDONYM_SECRET_FILE), pseudonym.as_ref())?;

    let keys = SiteKeys {
        signing,
        sealing,
        pseudonym: PseudonymSecret(pseudonym),
    };
    let public = keys.public();
    write_public(&dir.join(SIGNING_PUB_FILE), &public.signing)?;
    write_public(&dir.join(SEALING_PUB_FILE), &public.sealing)?;
    Ok(public)
}

/// Loads the keys from `dir`, refusing key files that other users can read.
pub fn load(dir: &Path) -> Result<SiteKeys, IdentityError> {
    let pk8 = read_secret(&dir.join(SIGNING_KEY_FILE), None)?;
    let signing = Ed25519KeyPair::from_pkcs8(&pk8)
        .map_err(|_| IdentityError::Malformed(dir.join(SIGNING_KEY_FILE)))?;
    let sealing = read_fixed(&dir.join(SEALING_KEY_FILE))?;
    let pseudonym = read_fixed(&dir.join(PSEUDONYM_SECRET_FILE))?;
    Ok(SiteKeys {
        signing,
        sealing: x25519_dalek::StaticSecret::from(*sealing),
        pseudonym: PseudonymSecret(pseudonym),
    })
}

/// Loads only the pseudonymisation secret (all that ingest needs).
pub fn load_pseudonym_secret(dir: &Path) -> Result<PseudonymSecret, IdentityError> {
    Ok(PseudonymSecret(read_fixed(
        &dir.join(PSEUDONYM_SECRET_FILE),
    )?))
}

fn read_fixed(path: &Path) -> Result<Zeroizing<[u8; 32]>, IdentityError> {
    let v = read_secret(path, Some(32))?;
    let mut out = Zeroizing::new([0u8; 32]);
    if v.len() != 32 {
        return Err(IdentityError::Malformed(path.into()));
    }
    out.copy_from_slice(&v);
    Ok(out)
}

fn read_secret(path: &Path, exact: Option<usize>) -> Result<Zeroizing<Vec<u8>>, IdentityError> {
    let err = |source| IdentityError::Read {
        path: path.into(),
        source,
    };
    let mut f = File::open(path).map_err(err)?;
    let meta = f.metadata().map_err(err)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::Permissions {
            path: path.into(),
            mode,
        });
    }
    // Key files are tiny; anything large is not a key file.
    if meta.len() > 4096 || exact.is_some_and(|n| meta.len() != n as u64) {
        return Err(IdentityError::Malformed(path.into()));
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    f.read_to_end(&mut buf).map_err(err)?;
    Ok(buf)
}

fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    let err = |source| IdentityError::Write {
        path: path.into(),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)
}

fn write_public(path: &Path, hex: &str) -> Result<(), IdentityError> {
    fs::write(path, format!("{hex}\n")).map_err(|source| IdentityError::Write {
        path: path.into(),
        source,
    })
}

/// Lower-case hex of a byte string (public values only).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_load_and_refuse_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("keys");
        let public = generate(&keys_dir).unwrap();
        for f in [SIGNING_KEY_FILE, SEALING_KEY_FILE, PSEUDONYM_SECRET_FILE] {
            let mode = fs::metadata(keys_dir.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        let loaded = load(&keys_dir).unwrap();
        assert_eq!(loaded.public().signing, public.signing);
        assert_eq!(loaded.public().sealing, public.sealing);
        assert!(matches!(generate(&keys_dir), Err(IdentityError::Exists(_))));
        // Debug output holds public keys only.
        let dbg = format!("{loaded:?} {:?}", loaded.pseudonym);
        assert!(dbg.contains(&public.signing));
        assert!(dbg.contains("redacted"));
        assert!(!dbg.contains(&hex(loaded.pseudonym.expose())));
    }

    #[test]
    fn world_readable_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path()).unwrap();
        let p = dir.path().join(PSEUDONYM_SECRET_FILE);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(IdentityError::Permissions { .. })
        ));
    }

    #[test]
    fn truncated_key_is_malformed() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path()).unwrap();
        let p = dir.path().join(SEALING_KEY_FILE);
        fs::write(&p, [1u8; 5]).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(load(dir.path()), Err(IdentityError::Malformed(_))));
    }
}
