//! Study manifests: what a coordinator asks of the consortium, in TOML (templates in
//! `policies/studies/`). Parsing is strict (unknown keys are errors) and validation names the
//! field at fault. A site's decision to join is the site policy applied to every release the
//! manifest foresees ([`Manifest::evaluate`]).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::jobs::Statistic;
use crate::annotations::model::Code;
use crate::annotations::readers::ReaderKind;
use crate::network::kinds::MessageKind;
use crate::network::policy::{Outbound, Policy};
use fedanno_protocol::cert::Role;

/// Most readers a study may name (binary STAPLE's pattern keys hold 32 raters).
pub const MAX_READERS: usize = 32;
/// Most categories of a classification task or labels of a segmentation task.
pub const MAX_CATEGORIES: usize = 32;

// Every job and release of a valid study fits the wire's bounds: R raters, at most L + 1 per-label
// values (labels and background), and confusion tensors of R × (L + 1) × L or R × K × K entries.
const _: () = {
    use fedanno_protocol::jobs::{MAX_CLASSES, MAX_PARAMS, MAX_RATERS};
    let l = MAX_CATEGORIES + 1;
    assert!(MAX_READERS <= MAX_RATERS && l < MAX_CLASSES);
    assert!(MAX_READERS * (l + 1) * l <= MAX_PARAMS);
    assert!(MAX_READERS * MAX_CATEGORIES * MAX_CATEGORIES <= MAX_PARAMS);
};

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("the manifest is not valid TOML for a study: {0}")]
    Parse(String),
    #[error("manifest field {field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
}

fn invalid(field: &'static str, problem: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        field,
        problem: problem.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub study: ReaderStudySection,
    pub task: Task,
    #[serde(default)]
    pub cases: CaseFilter,
    pub readers: Readers,
    pub consensus: ConsensusSection,
    #[serde(default)]
    pub metrics: MetricsSection,
    pub privacy: Privacy,
    pub participants: Participants,
    #[serde(default)]
    pub deadlines: Deadlines,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReaderStudySection {
    /// Lower-case letters, digits and '-', at most 64 characters.
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// The coordinating site's id.
    pub coordinator: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    Segmentation,
    Classification,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Segmentation => "segmentation",
            TaskKind::Classification => "classification",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub kind: TaskKind,
    /// Segmentation: label names; label value i + 1 is `labels[i]`.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Classification: the ordered categories.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Classification: the label scheme the readers use (`lungrads`, `birads`, `free`, ...).
    #[serde(default)]
    pub scheme: Option<String>,
    /// Segmentation: the codes a label's segment carries in the study's consensus (and so in
    /// its DICOM SEG exports); labels without codes are exported with the default ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<TaskCode>,
}

/// The DICOM description of one segmentation label of a study task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskCode {
    /// One of `task.labels`.
    pub label: String,
    /// Segmented property category (e.g. SCT 49755003 "Morphologically Altered Structure").
    pub category: Code,
    /// Segmented property type (e.g. SCT 27925004 "Nodule").
    #[serde(rename = "type")]
    pub property_type: Code,
    /// Recommended display colour, CIELab scaled to 0..=65535 as DICOM stores it.
    #[serde(default)]
    pub colour: Option<[u16; 3]>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFilter {
    /// DICOM modality of the series (e.g. "CT"); empty: any.
    #[serde(default)]
    pub modality: Option<String>,
    /// Most cases a site contributes (0: no limit).
    #[serde(default)]
    pub max_per_site: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Readers {
    /// Consortium panel readers (read at several sites).
    #[serde(default)]
    pub panel: Vec<String>,
    /// Models deployed at every site.
    #[serde(default)]
    pub models: Vec<String>,
    /// Local readers per site: `site-id = ["reader", ...]`.
    #[serde(default)]
    pub local: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    Staple,
    MultilabelStaple,
    DawidSkene,
}

impl Method {
    /// The statistic the method's EM releases (its name is the method's name).
    pub fn statistic(self) -> Statistic {
        match self {
            Method::Staple => Statistic::Staple,
            Method::MultilabelStaple => Statistic::MultilabelStaple,
            Method::DawidSkene => Statistic::DawidSkene,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.statistic().as_str()
    }
}

/// How binary STAPLE is federated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// One-round when the pattern histogram is small enough, iterative otherwise.
    #[default]
    Auto,
    /// One secure sum per EM iteration.
    Iterative,
    /// One secure sum of the rater-pattern histogram; every site iterates locally.
    OneRound,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Auto => "auto",
            Protocol::Iterative => "iterative",
            Protocol::OneRound => "one-round",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusSection {
    pub method: Method,
    #[serde(default)]
    pub protocol: Protocol,
    /// Upper bound on EM iterations.
    #[serde(default = "default_max_iterations")]
    pub max_iterations: u32,
}

fn default_max_iterations() -> u32 {
    10_000
}

/// A quality figure a study may release after its consensus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Sensitivity and specificity, or the confusion against the consensus.
    Performance,
    Dice,
    Hd95,
    /// Inter-reader agreement (classification).
    Agreement,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Performance => "performance",
            Metric::Dice => "dice",
            Metric::Hd95 => "hd95",
            Metric::Agreement => "agreement",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Released after consensus: `performance` (sensitivity/specificity or confusion),
    /// `dice`, `hd95`, `agreement`.
    #[serde(default = "default_metrics")]
    pub release: Vec<Metric>,
}

impl MetricsSection {
    /// Whether the study releases `metric`.
    pub fn releases(&self, metric: Metric) -> bool {
        self.release.contains(&metric)
    }
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            release: default_metrics(),
        }
    }
}

fn default_metrics() -> Vec<Metric> {
    vec![Metric::Performance, Metric::Dice, Metric::Agreement]
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Privacy {
    /// Fewest sites behind any released aggregate (at least 3).
    pub min_sites: u32,
    /// Fewest cases a site contributes to a release.
    pub min_cases: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Participants {
    pub sites: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deadlines {
    /// Last day to join (YYYY-MM-DD), informational.
    #[serde(default)]
    pub join_by: Option<String>,
    /// How long a site has to answer one step of a secure round before it counts as silent.
    #[serde(default = "default_round_timeout")]
    pub round_timeout_secs: u64,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            join_by: None,
            round_timeout_secs: default_round_timeout(),
        }
    }
}

fn default_round_timeout() -> u64 {
    60
}

/// A site's decision on a manifest, with the reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinDecision {
    pub joined: bool,
    pub reasons: Vec<String>,
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
}

fn valid_site(s: &str) -> bool {
    fedanno_protocol::ids::SiteId::new(s.to_owned()).is_ok()
}

fn distinct(list: &[String]) -> bool {
    list.iter().collect::<BTreeSet<_>>().len() == list.len()
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let m: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    fn validate(&self) -> Result<(), ManifestError> {
        self.validate_study()?;
        match self.task.kind {
            TaskKind::Segmentation => self.validate_segmentation()?,
            TaskKind::Classification => self.validate_classification()?,
        }
        if self.task.labels.iter().any(|l| l.trim().is_empty()) || !distinct(&self.task.labels) {
            return Err(invalid("task.labels", "labels must be distinct and named"));
        }
        self.validate_readers()?;
        self.validate_sites()?;
        if self.deadlines.round_timeout_secs == 0 || self.deadlines.round_timeout_secs > 86_400 {
            return Err(invalid(
                "deadlines.round_timeout_secs",
                "between 1 and 86400",
            ));
        }
        Ok(())
    }

    fn validate_study(&self) -> Result<(), ManifestError> {
        if !valid_id(&self.study.id) {
            return Err(invalid(
                "study.id",
                "use 1-64 lower-case letters, digits and '-'",
            ));
        }
        if self.study.title.trim().is_empty() {
            return Err(invalid("study.title", "must not be empty"));
        }
        if !valid_site(&self.study.coordinator) {
            return Err(invalid("study.coordinator", "not a valid site id"));
        }
        Ok(())
    }

    /// Task codes: each of a task label, at most one per label, codes that DICOM can write
    /// (value and scheme 1–16 characters, meaning 1–64).
    fn validate_codes(&self) -> Result<(), ManifestError> {
        let mut seen = BTreeSet::new();
        for c in &self.task.codes {
            if !self.task.labels.contains(&c.label) || !seen.insert(&c.label) {
                return Err(invalid(
                    "task.codes",
                    "each entry names a different one of task.labels",
                ));
            }
            for code in [&c.category, &c.property_type] {
                let fits = |t: &str, max: usize| {
                    !t.trim().is_empty() && t.chars().count() <= max && !t.contains('\\')
                };
                if !fits(&code.value, 16) || !fits(&code.scheme, 16) || !fits(&code.meaning, 64) {
                    return Err(invalid(
                        "task.codes",
                        "a code has a value and scheme of 1-16 characters and a meaning of 1-64",
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_segmentation(&self) -> Result<(), ManifestError> {
        if self.task.labels.is_empty() || self.task.labels.len() > MAX_CATEGORIES {
            return Err(invalid(
                "task.labels",
                format!("a segmentation task names 1-{MAX_CATEGORIES} labels"),
            ));
        }
        if !self.task.categories.is_empty() {
            return Err(invalid(
                "task.categories",
                "categories belong to classification tasks",
            ));
        }
        self.validate_codes()?;
        match (self.consensus.method, self.task.labels.len()) {
            (Method::DawidSkene, _) => Err(invalid(
                "consensus.method",
                "dawid-skene is for classification tasks",
            )),
            (Method::Staple, n) if n != 1 => Err(invalid(
                "consensus.method",
                "binary staple takes one label; use multilabel-staple",
            )),
            _ => Ok(()),
        }
    }

    fn validate_classification(&self) -> Result<(), ManifestError> {
        let n = self.task.categories.len();
        if !(2..=MAX_CATEGORIES).contains(&n) || !distinct(&self.task.categories) {
            return Err(invalid(
                "task.categories",
                format!(
                    "a classification task names 2-{MAX_CATEGORIES} distinct ordered categories"
                ),
            ));
        }
        if !self.task.codes.is_empty() {
            return Err(invalid("task.codes", "codes belong to segmentation tasks"));
        }
        if self.consensus.method != Method::DawidSkene {
            return Err(invalid(
                "consensus.method",
                "classification tasks use dawid-skene",
            ));
        }
        Ok(())
    }

    fn validate_readers(&self) -> Result<(), ManifestError> {
        let readers = self.reader_list();
        if readers.is_empty() {
            return Err(invalid("readers", "name at least one reader"));
        }
        if readers.len() > MAX_READERS {
            return Err(invalid(
                "readers",
                format!("at most {MAX_READERS} readers in one study"),
            ));
        }
        let mut seen = BTreeSet::new();
        for (r, _) in &readers {
            if !seen.insert(r) {
                return Err(invalid("readers", format!("reader {r:?} is named twice")));
            }
            if r.is_empty() || r.len() > 64 || r.chars().any(char::is_control) {
                return Err(invalid(
                    "readers",
                    "reader ids are 1-64 printable characters",
                ));
            }
            if r == super::local::CONSENSUS_READER {
                return Err(invalid(
                    "readers",
                    "\"consensus\" is reserved for the study's consensus annotations",
                ));
            }
        }
        if self.consensus.method == Method::MultilabelStaple && !self.readers.local.is_empty() {
            return Err(invalid(
                "readers.local",
                "multi-label STAPLE needs every reader on every case; local readers read one site only",
            ));
        }
        Ok(())
    }

    fn validate_sites(&self) -> Result<(), ManifestError> {
        if self.privacy.min_sites < fedanno_protocol::secagg::MIN_ROSTER as u32 {
            return Err(invalid(
                "privacy.min_sites",
                "at least 3: with two sites each learns the other's input from the sum",
            ));
        }
        let sites = &self.participants.sites;
        if !distinct(sites) || !sites.iter().all(|s| valid_site(s)) {
            return Err(invalid(
                "participants.sites",
                "distinct valid site ids, please",
            ));
        }
        if (sites.len() as u32) < self.privacy.min_sites {
            return Err(invalid(
                "participants.sites",
                format!(
                    "{} participants cannot meet privacy.min_sites = {}",
                    sites.len(),
                    self.privacy.min_sites
                ),
            ));
        }
        match self.readers.local.keys().find(|s| !sites.contains(s)) {
            Some(s) => Err(invalid(
                "readers.local",
                format!("site {s:?} is not a participant"),
            )),
            None => Ok(()),
        }
    }

    /// Every reader with its kind, in the study's rater order: sorted by id (as the offline
    /// `--readers-dir` pool orders them, so federated and pooled runs index raters alike).
    pub fn reader_list(&self) -> Vec<(String, ReaderKind)> {
        let r = &self.readers;
        let mut v: Vec<(String, ReaderKind)> = r
            .panel
            .iter()
            .map(|id| (id.clone(), ReaderKind::Panel))
            .chain(r.models.iter().map(|id| (id.clone(), ReaderKind::Model)))
            .chain(
                r.local
                    .values()
                    .flatten()
                    .map(|id| (id.clone(), ReaderKind::Local)),
            )
            .collect();
        v.sort_by(|a, b| (&a.0, a.1.as_str()).cmp(&(&b.0, b.1.as_str())));
        v
    }

    /// Reader ids in rater order.
    pub fn all_readers(&self) -> Vec<String> {
        self.reader_list().into_iter().map(|r| r.0).collect()
    }

    /// The readers whose annotations site `site` contributes: panel, models and its own local
    /// readers (another site's local readers never read here).
    pub fn readers_at(&self, site: &str) -> Vec<String> {
        self.reader_list()
            .into_iter()
            .filter(|(r, kind)| {
                *kind != ReaderKind::Local
                    || self.readers.local.get(site).is_some_and(|l| l.contains(r))
            })
            .map(|r| r.0)
            .collect()
    }

    /// The statistics this study's releases carry (what the policy sees).
    pub fn statistics(&self) -> Vec<Statistic> {
        let release = &self.metrics.release;
        let mut v = vec![self.consensus.method.statistic()];
        if release.iter().any(|m| *m != Metric::Agreement) {
            v.push(Statistic::SegmentationMetrics);
        }
        if self.metrics.releases(Metric::Agreement) && self.task.kind == TaskKind::Classification {
            v.push(Statistic::Agreement);
        }
        v
    }

    /// Applies a site's policy to every release the study foresees, assuming the manifest's
    /// thresholds (each actual release is gated again with its real numbers).
    pub fn evaluate(&self, policy: &Policy, me: &str, coordinator_roles: &[Role]) -> JoinDecision {
        let mut reasons = Vec::new();
        let mut joined = true;
        if !self.participants.sites.iter().any(|s| s == me) {
            return JoinDecision {
                joined: false,
                reasons: vec![format!("site {me} is not among the study's participants")],
            };
        }
        if !coordinator_roles.contains(&Role::Coordinator) {
            return JoinDecision {
                joined: false,
                reasons: vec![format!(
                    "the announcing site {} is not certified as a coordinator",
                    self.study.coordinator
                )],
            };
        }
        let decision = policy.decide(&Outbound::simple(
            MessageKind::StudyDecision,
            Some(coordinator_roles),
        ));
        if !decision.allowed {
            joined = false;
        }
        reasons.push(format!(
            "study decision to the coordinator: {} ({})",
            if decision.allowed {
                "allowed"
            } else {
                "denied"
            },
            decision.reasons.join("; ")
        ));
        for stat in self.statistics() {
            let d = policy.decide(&Outbound {
                kind: MessageKind::MaskedVector,
                to_roles: Some(coordinator_roles),
                statistic: Some(stat),
                contributing_sites: Some(self.privacy.min_sites),
                cases: Some(self.privacy.min_cases),
            });
            reasons.push(format!(
                "masked {stat} vectors from {} sites and {} cases: {} ({})",
                self.privacy.min_sites,
                self.privacy.min_cases,
                if d.allowed { "allowed" } else { "denied" },
                d.reasons.join("; ")
            ));
            joined &= d.allowed;
        }
        JoinDecision { joined, reasons }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn templates() -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/studies");
        let mut v: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .map(|p| {
                (
                    p.display().to_string(),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn every_template_parses() {
        let t = templates();
        assert!(t.len() >= 3, "templates: {t:?}");
        for (path, text) in &t {
            let m = Manifest::parse(text).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(!m.all_readers().is_empty());
        }
    }

    fn base() -> String {
        templates()
            .into_iter()
            .find(|(p, _)| p.contains("lung-nodule"))
            .unwrap()
            .1
    }

    #[test]
    fn mistakes_name_their_field() {
        let cases = [
            (
                "label = \"nodule\"\ncategory",
                "label = \"mass\"\ncategory",
                "task.codes",
            ),
            ("value = \"27925004\"", "value = \"\"", "task.codes"),
            (
                "meaning = \"Nodule\" }",
                "meaning = \"Nodule\", extra = 1 }",
                "unknown field `extra`",
            ),
            ("min_sites = 3", "min_sites = 2", "privacy.min_sites"),
            (
                "method = \"staple\"",
                "method = \"dawid-skene\"",
                "consensus.method",
            ),
            (
                "kind = \"segmentation\"",
                "kind = \"classification\"",
                "task.categories",
            ),
        ];
        for (from, to, field) in cases {
            let text = base().replace(from, to);
            assert_ne!(text, base(), "{from} not in the template");
            let e = Manifest::parse(&text).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
        let e = Manifest::parse(&base().replace("\"model-a\"", "\"consensus\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("reserved"), "{e}");
        let e = Manifest::parse(&format!("{}\nsurprise = 1\n", base())).unwrap_err();
        assert!(matches!(e, ManifestError::Parse(_)), "{e}");
        let text = base().replace(
            "[metrics]\nrelease = [",
            "[metrics]\nrelease = [\"kappa\", ",
        );
        assert_ne!(text, base(), "no metrics in the template");
        let e = Manifest::parse(&text).unwrap_err().to_string();
        assert!(e.contains("kappa") && e.contains("hd95"), "{e}");
    }

    #[test]
    fn readers_are_sorted_and_local_readers_stay_home() {
        let m = Manifest::parse(&base()).unwrap();
        let all = m.all_readers();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(all, sorted);
        let at_a = m.readers_at("site-a");
        let at_b = m.readers_at("site-b");
        assert!(at_a.iter().any(|r| r == "local-a"));
        assert!(!at_b.iter().any(|r| r == "local-a"));
        assert!(at_b.iter().any(|r| r == "panel-expert"));
    }

    #[test]
    fn strict_policy_declines_small_studies_and_research_policy_joins() {
        let m = Manifest::parse(&base()).unwrap();
        let roles = vec![Role::Site, Role::Coordinator];
        let policy = |name: &str| {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
            Policy::parse(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
        };
        let (research, strict) = (policy("research-site.toml"), policy("strict-site.toml"));
        let d = m.evaluate(&research, "site-a", &roles);
        assert!(d.joined, "{:?}", d.reasons);
        let d = m.evaluate(&strict, "site-a", &roles);
        assert!(!d.joined);
        assert!(
            d.reasons.iter().any(|r| r.contains("requires at least 5")),
            "{:?}",
            d.reasons
        );
        let d = m.evaluate(&research, "site-z", &roles);
        assert!(!d.joined);
        let d = m.evaluate(&research, "site-a", &[Role::Site]);
        assert!(!d.joined);
    }
}
