//! Site configuration: `<site>/config.toml`. This module owns parsing (unknown keys rejected,
//! every value defaulted), validation, and writing the documented default file at `init`.
//! It does no other I/O and holds no secrets: keys live in `<site>/keys/` (see `identity`).

use std::path::{Path, PathBuf};

use fedanno_protocol::ids::SiteId;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub const CONFIG_FILE: &str = "config.toml";
pub const DB_FILE: &str = "fedanno.db";
pub const KEYS_DIR: &str = "keys";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid fedanno configuration: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("environment variable {var}={value:?}: {message}")]
    Env {
        var: &'static str,
        value: String,
        message: String,
    },
}

/// The `FEDANNO_*` environment variables that override `config.toml` values for `fedanno node
/// run` (precedence: command-line flag > environment > config.toml > default). An unset or
/// empty variable overrides nothing.
pub const ENV_OVERRIDES: [(&str, &str); 5] = [
    (
        "FEDANNO_LISTEN",
        "network.listen (comma-separated multiaddresses)",
    ),
    (
        "FEDANNO_BOOTSTRAP",
        "network.bootstrap (comma-separated multiaddresses)",
    ),
    (
        "FEDANNO_POLICY",
        "network.policy (a file, relative to the site directory)",
    ),
    (
        "FEDANNO_CHECKPOINT_INTERVAL_SECS",
        "network.checkpoint_interval_secs",
    ),
    ("FEDANNO_IDLE_TIMEOUT_SECS", "network.idle_timeout_secs"),
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub site: SiteSection,
    #[serde(default)]
    pub ingest: IngestSection,
    #[serde(default)]
    pub deid: DeidSection,
    #[serde(default)]
    pub network: NetworkSection,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSection {
    /// libp2p multiaddresses to listen on.
    pub listen: Vec<String>,
    /// Peers to dial at start: `/ip4/ADDR/tcp/PORT/p2p/PEER_ID`.
    pub bootstrap: Vec<String>,
    /// Seconds an idle connection stays open (long enough to span federated rounds).
    pub idle_timeout_secs: u64,
    /// The site policy file, relative to the site directory; empty means the built-in
    /// research-site policy.
    pub policy: String,
    /// Seconds between signed audit checkpoints published to the members.
    pub checkpoint_interval_secs: u64,
}

impl Default for NetworkSection {
    fn default() -> Self {
        Self {
            listen: vec!["/ip4/0.0.0.0/tcp/4100".into()],
            bootstrap: Vec::new(),
            idle_timeout_secs: 3600,
            policy: String::new(),
            checkpoint_interval_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SiteSection {
    /// Human display name of the site.
    pub name: String,
    /// Consortium-unique site id (a-z, 0-9, '-').
    pub id: SiteId,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSection {
    /// Files larger than this are skipped unread.
    pub max_file_bytes: u64,
    /// Largest DICOM header (everything before Pixel Data) that is read.
    pub max_header_bytes: u64,
    /// Largest single header element value.
    pub max_element_bytes: u64,
    /// Largest image an instance may declare: rows × columns × frames × samples.
    pub max_voxels_per_instance: u64,
    /// Instances written to the database per transaction.
    pub batch_size: usize,
    /// Header-parsing threads; 0 means one per core.
    pub threads: usize,
}

impl Default for IngestSection {
    fn default() -> Self {
        Self {
            max_file_bytes: 4 << 30,
            max_header_bytes: 64 << 20,
            max_element_bytes: 16 << 20,
            max_voxels_per_instance: 1 << 31,
            batch_size: 256,
            threads: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DateMode {
    /// Dates are shifted by a constant per-patient offset (intervals are kept).
    Shift,
    /// Dates are dropped from everything pseudonymous.
    Drop,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeidSection {
    /// What happens to study dates in pseudonymous records.
    pub dates: DateMode,
    /// Largest per-patient date shift, in days (the shift is in ±this range, never 0).
    pub date_shift_max_days: u32,
}

impl Default for DeidSection {
    fn default() -> Self {
        Self {
            dates: DateMode::Shift,
            date_shift_max_days: 365,
        }
    }
}

impl Config {
    pub fn new(name: &str, id: SiteId) -> Self {
        Self {
            site: SiteSection {
                name: name.to_string(),
                id,
            },
            ingest: IngestSection::default(),
            deid: DeidSection::default(),
            network: NetworkSection::default(),
        }
    }

    /// Reads and validates `<dir>/config.toml`.
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(&text, &path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: path.into(),
            message,
        })?;
        Ok(cfg)
    }

    /// Applies the `FEDANNO_*` overrides of [`ENV_OVERRIDES`] read through `get` (normally
    /// `std::env::var`), validates the result and returns the names of the variables applied.
    /// An error names the variable, its value and what is expected.
    pub fn apply_env(
        &mut self,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<&'static str>, ConfigError> {
        let mut applied = Vec::new();
        for (var, _) in ENV_OVERRIDES {
            let Some(value) = get(var).filter(|v| !v.trim().is_empty()) else {
                continue;
            };
            let err = |message: &str| ConfigError::Env {
                var,
                value: value.clone(),
                message: message.to_string(),
            };
            let list = || -> Vec<String> {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(String::from)
                    .collect()
            };
            let secs = || -> Result<u64, ConfigError> {
                value
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| err("expected a whole number of seconds"))
            };
            let n = &mut self.network;
            match var {
                "FEDANNO_LISTEN" => n.listen = list(),
                "FEDANNO_BOOTSTRAP" => n.bootstrap = list(),
                "FEDANNO_POLICY" => n.policy = value.trim().to_string(),
                "FEDANNO_CHECKPOINT_INTERVAL_SECS" => n.checkpoint_interval_secs = secs()?,
                "FEDANNO_IDLE_TIMEOUT_SECS" => n.idle_timeout_secs = secs()?,
                _ => continue,
            }
            if let Err(message) = self.validate() {
                return Err(err(&message));
            }
            applied.push(var);
        }
        Ok(applied)
    }

    fn validate(&self) -> Result<(), String> {
        let i = &self.ingest;
        if self.site.name.trim().is_empty() {
            return Err("site.name must not be empty".into());
        }
        if i.batch_size == 0 || i.batch_size > 100_000 {
            return Err("ingest.batch_size must be between 1 and 100000".into());
        }
        if i.max_header_bytes < 1024 || i.max_element_bytes < 1024 {
            return Err(
                "ingest.max_header_bytes and max_element_bytes must be at least 1024".into(),
            );
        }
        if i.threads > 1024 {
            return Err("ingest.threads must be at most 1024".into());
        }
        if self.network.checkpoint_interval_secs < 10 {
            return Err("network.checkpoint_interval_secs must be at least 10".into());
        }
        if self.network.idle_timeout_secs < 10 {
            return Err("network.idle_timeout_secs must be at least 10".into());
        }
        if self.deid.date_shift_max_days == 0 || self.deid.date_shift_max_days > 3650 {
            return Err("deid.date_shift_max_days must be between 1 and 3650".into());
        }
        Ok(())
    }

    /// The documented configuration file written by `fedanno init`.
    pub fn to_documented_toml(&self) -> String {
        let i = &self.ingest;
        let d = &self.deid;
        let dates = match d.dates {
            DateMode::Shift => "shift",
            DateMode::Drop => "drop",
        };
        format!(
            r#"# fedanno site configuration. Unknown keys are rejected; every key but [site] has a default.

[site]
# Human display name of the site.
name = {name}
# Consortium-unique site id: a-z, 0-9 and '-', at most 32 characters.
id = "{id}"

[ingest]
# Files larger than this many bytes are skipped unread.
max_file_bytes = {mfb}
# Largest DICOM header (everything before Pixel Data) that is read, in bytes.
max_header_bytes = {mhb}
# Largest single header element value, in bytes; a larger declared length marks the file corrupt.
max_element_bytes = {meb}
# Largest image an instance may declare (rows x columns x frames x samples per pixel).
max_voxels_per_instance = {mvi}
# Instances written to the database per transaction.
batch_size = {bs}
# Header-parsing threads; 0 means one per core.
threads = {th}

[deid]
# Study dates in pseudonymous records: "shift" (constant per-patient offset) or "drop".
dates = "{dates}"
# Largest per-patient date shift in days (the shift is never 0).
date_shift_max_days = {dsm}

[network]
# libp2p multiaddresses to listen on.
listen = {listen}
# Certified peers to dial at start, e.g. "/ip4/10.1.2.3/tcp/4100/p2p/12D3KooW...".
bootstrap = {bootstrap}
# Seconds an idle connection stays open (long enough to span federated rounds).
idle_timeout_secs = {idle}
# The site policy file, relative to this directory; empty: the built-in research-site policy.
policy = {policy}
# Seconds between signed audit checkpoints published to the members.
checkpoint_interval_secs = {cpi}
"#,
            name = toml_string(&self.site.name),
            id = self.site.id,
            mfb = i.max_file_bytes,
            mhb = i.max_header_bytes,
            meb = i.max_element_bytes,
            mvi = i.max_voxels_per_instance,
            bs = i.batch_size,
            th = i.threads,
            dsm = d.date_shift_max_days,
            listen = toml_list(&self.network.listen),
            bootstrap = toml_list(&self.network.bootstrap),
            idle = self.network.idle_timeout_secs,
            policy = toml_string(&self.network.policy),
            cpi = self.network.checkpoint_interval_secs,
        )
    }
}

fn toml_list(v: &[String]) -> String {
    toml::Value::Array(v.iter().map(|s| toml::Value::String(s.clone())).collect()).to_string()
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Config {
        Config::new("St. \"Mary\" Hospital", SiteId::new("st-marys").unwrap())
    }

    #[test]
    fn documented_file_round_trips() {
        let c = sample();
        let parsed = Config::parse(&c.to_documented_toml(), Path::new("x")).unwrap();
        assert_eq!(parsed, c);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let text = sample()
            .to_documented_toml()
            .replace("[deid]", "[deid]\nshiftt = 1");
        let err = Config::parse(&text, Path::new("cfg"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("shiftt"), "{err}");
        let text = format!("{}\n[network]\nx = 1\n", sample().to_documented_toml());
        assert!(Config::parse(&text, Path::new("cfg")).is_err());
    }

    #[test]
    fn defaults_fill_missing_sections() {
        let c = Config::parse("[site]\nname = \"A\"\nid = \"a\"\n", Path::new("x")).unwrap();
        assert_eq!(c.ingest, IngestSection::default());
        assert_eq!(c.deid.dates, DateMode::Shift);
    }

    #[test]
    fn the_deploy_examples_parse() {
        for (name, text) in [
            ("site", include_str!("../../../deploy/site.config.toml")),
            (
                "coordinator",
                include_str!("../../../deploy/coordinator.config.toml"),
            ),
        ] {
            let c = Config::parse(text, Path::new(name)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.ingest, IngestSection::default(), "{name}");
            assert_eq!(c.deid, DeidSection::default(), "{name}");
            assert_eq!(c.network.listen, NetworkSection::default().listen, "{name}");
        }
    }

    #[test]
    fn environment_overrides_replace_config_values() {
        let mut c = sample();
        let env = |k: &str| -> Option<String> {
            match k {
                "FEDANNO_LISTEN" => Some("/ip4/127.0.0.1/tcp/4101, /ip6/::1/tcp/4101".into()),
                "FEDANNO_BOOTSTRAP" => Some(" ".into()),
                "FEDANNO_POLICY" => Some("strict.toml".into()),
                "FEDANNO_IDLE_TIMEOUT_SECS" => Some("120".into()),
                _ => None,
            }
        };
        let applied = c.apply_env(env).unwrap();
        assert_eq!(
            applied,
            [
                "FEDANNO_LISTEN",
                "FEDANNO_POLICY",
                "FEDANNO_IDLE_TIMEOUT_SECS"
            ]
        );
        assert_eq!(
            c.network.listen,
            ["/ip4/127.0.0.1/tcp/4101", "/ip6/::1/tcp/4101"]
        );
        assert!(c.network.bootstrap.is_empty(), "an empty variable is unset");
        assert_eq!(c.network.policy, "strict.toml");
        assert_eq!(c.network.idle_timeout_secs, 120);
        assert_eq!(c.network.checkpoint_interval_secs, 300);
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        let mut c = sample();
        let e = c
            .apply_env(|k| (k == "FEDANNO_IDLE_TIMEOUT_SECS").then(|| "ten".to_string()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("FEDANNO_IDLE_TIMEOUT_SECS=\"ten\""), "{e}");
        let e = c
            .apply_env(|k| (k == "FEDANNO_CHECKPOINT_INTERVAL_SECS").then(|| "5".to_string()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 10"), "{e}");
    }

    #[test]
    fn invalid_values_are_explained() {
        let bad_id = "[site]\nname = \"A\"\nid = \"Not Valid\"\n";
        assert!(Config::parse(bad_id, Path::new("x")).is_err());
        let zero = "[site]\nname = \"A\"\nid = \"a\"\n[ingest]\nbatch_size = 0\n";
        let e = Config::parse(zero, Path::new("x")).unwrap_err().to_string();
        assert!(e.contains("batch_size"), "{e}");
    }
}
