//! The site policy: what this site may send, to whom, and under which thresholds. Pure: a
//! [`Policy`] parsed from TOML (unknown keys rejected) and [`Policy::decide`], which every
//! outbound message passes through before anything is written to the audit log or the network.
//! Rules are checked in order; the first rule that matches the message decides; a message no
//! rule matches is denied. Every decision names the rule and gives its reasons.

use std::fmt;
use std::str::FromStr;

use fedanno_protocol::cert::Role;
use fedanno_protocol::ids::SiteId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use super::kinds::MessageKind;
use crate::reader_studies::jobs::Statistic;

#[derive(Debug, Error)]
pub enum PolicyError {
    /// Not TOML, an unknown key, an unknown message kind or role (serde names it, with its
    /// line and the known values).
    #[error("policy file is not valid: {0}")]
    Parse(String),
    #[error("the policy has no rules")]
    Empty,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    Allow,
    Deny,
}

/// One entry of a rule's list: `*` (anything) or one named value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern<T> {
    Any,
    Only(T),
}

impl<T: PartialEq> Pattern<T> {
    fn covers(&self, value: &T) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Only(x) => x == value,
        }
    }
}

impl<T: fmt::Display> Serialize for Pattern<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Pattern::Any => s.serialize_str("*"),
            Pattern::Only(x) => s.collect_str(x),
        }
    }
}

impl<'de, T> Deserialize<'de> for Pattern<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "*" {
            return Ok(Pattern::Any);
        }
        s.parse()
            .map(Pattern::Only)
            .map_err(serde::de::Error::custom)
    }
}

/// A recipient role as a policy names it (`site`, `coordinator`, `auditor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleName(pub Role);

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl FromStr for RoleName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse()
            .map(RoleName)
            .map_err(|_| format!("unknown role {s:?} (known: site, coordinator, auditor)"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    pub effect: Effect,
    /// Message kinds this rule covers (`*` for all).
    pub kinds: Vec<Pattern<MessageKind>>,
    /// Recipient roles this rule covers (`*` for all; a broadcast counts as every role).
    #[serde(default = "any")]
    pub to_roles: Vec<Pattern<RoleName>>,
    /// Statistic kinds covered (for masked vectors and results); empty means any.
    #[serde(default)]
    pub statistics: Vec<Pattern<Statistic>>,
    /// Minimum number of contributing sites for an aggregate to be released.
    #[serde(default)]
    pub min_sites: Option<u32>,
    /// Minimum number of cases behind this site's contribution.
    #[serde(default)]
    pub min_cases: Option<u64>,
}

fn any() -> Vec<Pattern<RoleName>> {
    vec![Pattern::Any]
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "rule")]
    pub rules: Vec<Rule>,
    /// Who is asked to co-sign this site's checkpoints, and how many co-signatures make one
    /// witnessed (`[witness]`; default: every member, quorum 1).
    #[serde(default)]
    pub witness: WitnessPolicy,
    /// What of this site's audit log an auditor may see whole (`[auditors]`; default: all).
    /// Whether an auditor may fetch at all is for the rules (`audit-proof`, `audit-entries`).
    #[serde(default)]
    pub auditors: AuditorPolicy,
}

/// An auditor's scope: the studies whose audit entries it receives whole. Entries naming
/// another study are withheld (the auditor gets their leaf hash, enough to verify the signed
/// log, not what they say); entries naming no study (membership, checkpoints, witnessing) are
/// always in scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditorPolicy {
    #[serde(default = "every_study")]
    pub studies: Vec<Pattern<String>>,
}

impl Default for AuditorPolicy {
    fn default() -> Self {
        AuditorPolicy {
            studies: every_study(),
        }
    }
}

impl AuditorPolicy {
    /// Whether an entry naming `study` (or none) is in an auditor's scope.
    pub fn covers(&self, study: Option<&str>) -> bool {
        study.is_none_or(|s| self.studies.iter().any(|p| p.covers(&s.to_string())))
    }
}

fn every_study() -> Vec<Pattern<String>> {
    vec![Pattern::Any]
}

/// A site as a policy names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteName(pub SiteId);

impl fmt::Display for SiteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for SiteName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SiteId::new(s)
            .map(SiteName)
            .map_err(|e| format!("{s:?} is not a site id: {e}"))
    }
}

/// The witness policy, in the spirit of C2SP tlog-policy: the witnesses of this site's log and
/// the quorum of distinct co-signatures a checkpoint needs. A checkpoint with fewer is
/// reported as unwitnessed by `node status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessPolicy {
    #[serde(default = "every_site")]
    pub witnesses: Vec<Pattern<SiteName>>,
    #[serde(default = "one")]
    pub quorum: u32,
}

impl Default for WitnessPolicy {
    fn default() -> Self {
        WitnessPolicy {
            witnesses: every_site(),
            quorum: 1,
        }
    }
}

impl WitnessPolicy {
    /// Whether `site` is one of this site's witnesses.
    pub fn asks(&self, site: &SiteId) -> bool {
        self.witnesses
            .iter()
            .any(|p| matches!(p, Pattern::Any) || matches!(p, Pattern::Only(n) if &n.0 == site))
    }
}

fn every_site() -> Vec<Pattern<SiteName>> {
    vec![Pattern::Any]
}

fn one() -> u32 {
    1
}

/// An outbound message as the policy sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outbound<'a> {
    pub kind: MessageKind,
    /// The recipient's roles; `None` for a broadcast to the consortium.
    pub to_roles: Option<&'a [Role]>,
    pub statistic: Option<Statistic>,
    /// Sites contributing to the aggregate this message belongs to.
    pub contributing_sites: Option<u32>,
    /// Cases behind this site's contribution.
    pub cases: Option<u64>,
}

impl<'a> Outbound<'a> {
    pub fn simple(kind: MessageKind, to_roles: Option<&'a [Role]>) -> Self {
        Outbound {
            kind,
            to_roles,
            statistic: None,
            contributing_sites: None,
            cases: None,
        }
    }
}

/// A decision with the rule that made it and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    pub rule: String,
    pub reasons: Vec<String>,
}

impl Rule {
    /// Whether the rule applies to `m` (kind, recipient role, statistic); its thresholds are
    /// checked after.
    fn matches(&self, m: &Outbound<'_>) -> bool {
        let kind_ok = self.kinds.iter().any(|k| k.covers(&m.kind));
        let role_ok = match m.to_roles {
            None => true,
            Some(roles) => self.to_roles.iter().any(|p| {
                matches!(p, Pattern::Any) || roles.iter().any(|r| p.covers(&RoleName(*r)))
            }),
        };
        let statistic_ok = self.statistics.is_empty()
            || m.statistic
                .is_some_and(|s| self.statistics.iter().any(|p| p.covers(&s)));
        kind_ok && role_ok && statistic_ok
    }
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let p: Policy = toml::from_str(text).map_err(|e| PolicyError::Parse(e.to_string()))?;
        if p.rules.is_empty() {
            return Err(PolicyError::Empty);
        }
        Ok(p)
    }

    /// Decides one outbound message: the first rule that matches decides; none: denied.
    pub fn decide(&self, m: &Outbound<'_>) -> Decision {
        let Some(r) = self.rules.iter().find(|r| r.matches(m)) else {
            return Decision {
                allowed: false,
                rule: "(default)".into(),
                reasons: vec![format!(
                    "no rule of policy {:?} allows {} messages to this recipient",
                    self.name, m.kind
                )],
            };
        };
        let mut reasons = vec![format!("rule {:?} covers {} messages", r.name, m.kind)];
        let verdict = match r.effect {
            Effect::Deny => Err("the rule denies them".to_string()),
            Effect::Allow => threshold("contributing sites", m.contributing_sites, r.min_sites)
                .and_then(|a| Ok([a, threshold("cases", m.cases, r.min_cases)?])),
        };
        let allowed = match verdict {
            Ok(met) => {
                reasons.extend(met.into_iter().flatten());
                reasons.push("allowed".into());
                true
            }
            Err(why) => {
                reasons.push(why);
                false
            }
        };
        Decision {
            allowed,
            rule: r.name.clone(),
            reasons,
        }
    }

    /// The policy every new site starts with: membership and audit traffic to members;
    /// statistics only as aggregates of at least three sites; notices from nobody.
    pub fn default_site() -> Policy {
        // The embedded default is one of the shipped examples and is parsed by a test.
        Policy::parse(DEFAULT_POLICY).unwrap_or_else(|_| Policy::deny_all())
    }
}

impl Policy {
    /// The policy of an auditor's node: membership and audit fetches, nothing else.
    pub fn auditor() -> Policy {
        Policy::parse(AUDITOR_POLICY).unwrap_or_else(|_| Policy::deny_all())
    }

    fn deny_all() -> Policy {
        Policy {
            name: "deny-all".into(),
            description: String::new(),
            rules: vec![],
            witness: WitnessPolicy::default(),
            auditors: AuditorPolicy::default(),
        }
    }
}

/// Checks a rule's minimum: `Ok(None)` when it has none, `Ok(Some(reason))` when met, the
/// reason it is not met otherwise.
fn threshold<T: PartialOrd + fmt::Display + Copy>(
    what: &str,
    value: Option<T>,
    min: Option<T>,
) -> Result<Option<String>, String> {
    let Some(min) = min else { return Ok(None) };
    match value {
        Some(n) if n >= min => Ok(Some(format!("{n} {what} ≥ {min}"))),
        Some(n) => Err(format!("only {n} {what}; the rule requires at least {min}")),
        None => Err(format!(
            "the number of {what} is unknown; the rule requires at least {min}"
        )),
    }
}

/// The default policy text (`policies/research-site.toml`).
pub const DEFAULT_POLICY: &str = include_str!("../../../policies/research-site.toml");

/// The built-in policy of an auditor's node (`policies/auditor.toml`).
pub const AUDITOR_POLICY: &str = include_str!("../../../policies/auditor.toml");

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(r: &[&str]) -> Vec<Role> {
        r.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn shipped_policies_parse() {
        for text in [
            DEFAULT_POLICY,
            include_str!("../../../policies/strict-site.toml"),
            AUDITOR_POLICY,
        ] {
            let p = Policy::parse(text).unwrap();
            assert!(!p.rules.is_empty());
        }
        assert_eq!(Policy::default_site().name, "research-site");
        assert_eq!(Policy::auditor().name, "auditor");
    }

    #[test]
    fn first_matching_rule_decides_and_default_denies() {
        let p = Policy::parse(
            r#"
            name = "t"
            [[rule]]
            name = "no notices to auditors"
            effect = "deny"
            kinds = ["notice"]
            to_roles = ["auditor"]
            [[rule]]
            name = "notices"
            effect = "allow"
            kinds = ["notice"]
            [[rule]]
            name = "stats"
            effect = "allow"
            kinds = ["masked-vector"]
            to_roles = ["coordinator"]
            statistics = ["staple"]
            min_sites = 3
            min_cases = 10
            "#,
        )
        .unwrap();
        let aud = roles(&["auditor"]);
        let site = roles(&["site"]);
        let coord = roles(&["site", "coordinator"]);
        let d = p.decide(&Outbound::simple(MessageKind::Notice, Some(&aud)));
        assert_eq!(
            (d.allowed, d.rule.as_str()),
            (false, "no notices to auditors")
        );
        assert!(
            p.decide(&Outbound::simple(MessageKind::Notice, Some(&site)))
                .allowed
        );
        let stat = |n, c| Outbound {
            kind: MessageKind::MaskedVector,
            to_roles: Some(&coord),
            statistic: Some(Statistic::Staple),
            contributing_sites: n,
            cases: c,
        };
        assert!(p.decide(&stat(Some(3), Some(10))).allowed);
        let d = p.decide(&stat(Some(2), Some(10)));
        assert!(
            !d.allowed
                && d.reasons
                    .iter()
                    .any(|r| r.contains("only 2 contributing sites"))
        );
        assert!(!p.decide(&stat(Some(5), Some(9))).allowed);
        assert!(!p.decide(&stat(None, Some(50))).allowed);
        // Wrong statistic or wrong role: no rule matches, default deny.
        let other = Outbound {
            statistic: Some(Statistic::DawidSkene),
            ..stat(Some(5), Some(50))
        };
        assert_eq!(p.decide(&other).rule, "(default)");
        assert!(
            !p.decide(&Outbound::simple(MessageKind::MaskedVector, Some(&site)))
                .allowed
        );
    }

    #[test]
    fn the_auditor_scope_names_studies_and_keeps_entries_of_none() {
        let p = Policy::parse(
            &DEFAULT_POLICY.replace("studies = [\"*\"]", "studies = [\"s1\", \"s2\"]"),
        )
        .unwrap();
        let scope = &p.auditors;
        assert!(scope.covers(Some("s1")) && scope.covers(Some("s2")) && scope.covers(None));
        assert!(!scope.covers(Some("s3")));
        assert!(Policy::default_site().auditors.covers(Some("anything")));
        // Answers to auditors: the research site gives entries, the strict one only proofs.
        let aud = roles(&["auditor"]);
        let site = roles(&["site"]);
        let strict = Policy::parse(include_str!("../../../policies/strict-site.toml")).unwrap();
        for (policy, kind, allowed) in [
            (&p, MessageKind::AuditEntries, true),
            (&p, MessageKind::AuditProof, true),
            (&strict, MessageKind::AuditProof, true),
            (&strict, MessageKind::AuditEntries, false),
        ] {
            let d = policy.decide(&Outbound::simple(kind, Some(&aud)));
            assert_eq!(d.allowed, allowed, "{kind} {d:?}");
            // Never to a site: audit material is for auditors.
            assert!(!policy.decide(&Outbound::simple(kind, Some(&site))).allowed);
        }
    }

    #[test]
    fn unknown_kinds_roles_and_keys_are_refused() {
        let bad_kind =
            "name = \"x\"\n[[rule]]\nname = \"r\"\neffect = \"allow\"\nkinds = [\"telepathy\"]\n";
        let e = Policy::parse(bad_kind).unwrap_err().to_string();
        assert!(
            e.contains("unknown message kind \"telepathy\"") && e.contains("masked-vector"),
            "{e}"
        );
        let bad_role = "name = \"x\"\n[[rule]]\nname = \"r\"\neffect = \"allow\"\nkinds = [\"notice\"]\nto_roles = [\"king\"]\n";
        let e = Policy::parse(bad_role).unwrap_err().to_string();
        assert!(e.contains("unknown role \"king\""), "{e}");
        let bad_key = "name = \"x\"\n[[rule]]\nname = \"r\"\neffect = \"allow\"\nkinds = [\"notice\"]\nmin_site = 3\n";
        assert!(matches!(Policy::parse(bad_key), Err(PolicyError::Parse(_))));
        assert!(matches!(
            Policy::parse("name = \"x\"\nrule = []\n"),
            Err(PolicyError::Empty)
        ));
    }
}
