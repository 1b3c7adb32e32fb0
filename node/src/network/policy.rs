//! The site policy: what this site may send, to whom, and under which thresholds. Pure: a
//! [`Policy`] parsed from TOML (unknown keys rejected) and [`Policy::decide`], which every
//! outbound message passes through before anything is written to the audit log or the network.
//! Rules are checked in order; the first rule that matches the message decides; a message no
//! rule matches is denied. Every decision names the rule and gives its reasons.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Message kinds a policy can name.
pub const MESSAGE_KINDS: &[&str] = &[
    "hello",
    "checkpoint",
    "witness",
    "receipt",
    "refusal",
    "notice",
    "study-announcement",
    "study-decision",
    "annotation-metadata",
    "secagg-keys",
    "secagg-statement",
    "masked-vector",
    "result",
];

/// Roles a recipient can hold (from its certificate).
pub const ROLES: &[&str] = &["site", "coordinator", "auditor"];

#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("policy file is not valid: {0}")]
    Parse(String),
    #[error("rule {rule:?}: unknown message kind {kind:?} (known: {known})")]
    UnknownKind {
        rule: String,
        kind: String,
        known: String,
    },
    #[error("rule {rule:?}: unknown role {role:?} (known: site, coordinator, auditor)")]
    UnknownRole { rule: String, role: String },
    #[error("the policy has no rules")]
    Empty,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    pub effect: Effect,
    /// Message kinds this rule covers (`*` for all).
    pub kinds: Vec<String>,
    /// Recipient roles this rule covers (`*` for all; a broadcast counts as every role).
    #[serde(default = "star")]
    pub to_roles: Vec<String>,
    /// Statistic kinds covered (for masked vectors and results); empty means any.
    #[serde(default)]
    pub statistics: Vec<String>,
    /// Minimum number of contributing sites for an aggregate to be released.
    #[serde(default)]
    pub min_sites: Option<u32>,
    /// Minimum number of cases behind this site's contribution.
    #[serde(default)]
    pub min_cases: Option<u64>,
}

fn star() -> Vec<String> {
    vec!["*".into()]
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "rule")]
    pub rules: Vec<Rule>,
}

/// An outbound message as the policy sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outbound<'a> {
    pub kind: &'a str,
    /// The recipient's roles; `None` for a broadcast to the consortium.
    pub to_roles: Option<&'a [String]>,
    pub statistic: Option<&'a str>,
    /// Sites contributing to the aggregate this message belongs to.
    pub contributing_sites: Option<u32>,
    /// Cases behind this site's contribution.
    pub cases: Option<u64>,
}

impl<'a> Outbound<'a> {
    pub fn simple(kind: &'a str, to_roles: Option<&'a [String]>) -> Self {
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

fn covers(list: &[String], value: &str) -> bool {
    list.iter().any(|x| x == "*" || x == value)
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let p: Policy = toml::from_str(text).map_err(|e| PolicyError::Parse(e.to_string()))?;
        if p.rules.is_empty() {
            return Err(PolicyError::Empty);
        }
        for r in &p.rules {
            for k in &r.kinds {
                if k != "*" && !MESSAGE_KINDS.contains(&k.as_str()) {
                    return Err(PolicyError::UnknownKind {
                        rule: r.name.clone(),
                        kind: k.clone(),
                        known: MESSAGE_KINDS.join(", "),
                    });
                }
            }
            for role in &r.to_roles {
                if role != "*" && !ROLES.contains(&role.as_str()) {
                    return Err(PolicyError::UnknownRole {
                        rule: r.name.clone(),
                        role: role.clone(),
                    });
                }
            }
        }
        Ok(p)
    }

    /// Decides one outbound message.
    pub fn decide(&self, m: &Outbound<'_>) -> Decision {
        for r in &self.rules {
            if !covers(&r.kinds, m.kind) {
                continue;
            }
            let role_ok = match m.to_roles {
                None => true,
                Some(roles) => {
                    r.to_roles.iter().any(|x| x == "*")
                        || roles.iter().any(|role| covers(&r.to_roles, role))
                }
            };
            if !role_ok {
                continue;
            }
            if !r.statistics.is_empty() && !m.statistic.is_some_and(|s| covers(&r.statistics, s)) {
                continue;
            }
            let mut reasons = vec![format!("rule {:?} covers {} messages", r.name, m.kind)];
            if r.effect == Effect::Deny {
                reasons.push("the rule denies them".into());
                return Decision {
                    allowed: false,
                    rule: r.name.clone(),
                    reasons,
                };
            }
            if let Some(min) = r.min_sites {
                match m.contributing_sites {
                    Some(n) if n >= min => reasons.push(format!("{n} contributing sites ≥ {min}")),
                    Some(n) => {
                        reasons.push(format!(
                            "only {n} contributing sites; the rule requires at least {min}"
                        ));
                        return Decision {
                            allowed: false,
                            rule: r.name.clone(),
                            reasons,
                        };
                    }
                    None => {
                        reasons.push(format!("the number of contributing sites is unknown; the rule requires at least {min}"));
                        return Decision {
                            allowed: false,
                            rule: r.name.clone(),
                            reasons,
                        };
                    }
                }
            }
            if let Some(min) = r.min_cases {
                match m.cases {
                    Some(n) if n >= min => reasons.push(format!("{n} cases ≥ {min}")),
                    Some(n) => {
                        reasons.push(format!("only {n} cases; the rule requires at least {min}"));
                        return Decision {
                            allowed: false,
                            rule: r.name.clone(),
                            reasons,
                        };
                    }
                    None => {
                        reasons.push(format!(
                            "the number of cases is unknown; the rule requires at least {min}"
                        ));
                        return Decision {
                            allowed: false,
                            rule: r.name.clone(),
                            reasons,
                        };
                    }
                }
            }
            reasons.push("allowed".into());
            return Decision {
                allowed: true,
                rule: r.name.clone(),
                reasons,
            };
        }
        Decision {
            allowed: false,
            rule: "(default)".into(),
            reasons: vec![format!(
                "no rule of policy {:?} allows {} messages to this recipient",
                self.name, m.kind
            )],
        }
    }

    /// The policy every new site starts with: membership and audit traffic to members;
    /// statistics only as aggregates of at least three sites; notices from nobody.
    pub fn default_site() -> Policy {
        // The embedded default is one of the shipped examples and is parsed by a test.
        Policy::parse(DEFAULT_POLICY).unwrap_or_else(|_| Policy {
            name: "deny-all".into(),
            description: String::new(),
            rules: vec![],
        })
    }
}

/// The default policy text (`policies/research-site.toml`).
pub const DEFAULT_POLICY: &str = include_str!("../../../policies/research-site.toml");

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn shipped_policies_parse() {
        for text in [
            DEFAULT_POLICY,
            include_str!("../../../policies/strict-site.toml"),
        ] {
            let p = Policy::parse(text).unwrap();
            assert!(!p.rules.is_empty());
        }
        assert_eq!(Policy::default_site().name, "research-site");
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
        let d = p.decide(&Outbound::simple("notice", Some(&aud)));
        assert_eq!(
            (d.allowed, d.rule.as_str()),
            (false, "no notices to auditors")
        );
        assert!(p.decide(&Outbound::simple("notice", Some(&site))).allowed);
        let stat = |n, c| Outbound {
            kind: "masked-vector",
            to_roles: Some(&coord),
            statistic: Some("staple"),
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
            statistic: Some("kappa"),
            ..stat(Some(5), Some(50))
        };
        assert_eq!(p.decide(&other).rule, "(default)");
        assert!(
            !p.decide(&Outbound::simple("masked-vector", Some(&site)))
                .allowed
        );
    }

    #[test]
    fn unknown_kinds_roles_and_keys_are_refused() {
        let bad_kind =
            "name = \"x\"\n[[rule]]\nname = \"r\"\neffect = \"allow\"\nkinds = [\"telepathy\"]\n";
        assert!(matches!(
            Policy::parse(bad_kind),
            Err(PolicyError::UnknownKind { .. })
        ));
        let bad_role = "name = \"x\"\n[[rule]]\nname = \"r\"\neffect = \"allow\"\nkinds = [\"notice\"]\nto_roles = [\"king\"]\n";
        assert!(matches!(
            Policy::parse(bad_role),
            Err(PolicyError::UnknownRole { .. })
        ));
        let bad_key = "name = \"x\"\n[[rule]]\nname = \"r\"\neffect = \"allow\"\nkinds = [\"notice\"]\nmin_site = 3\n";
        assert!(matches!(Policy::parse(bad_key), Err(PolicyError::Parse(_))));
        assert!(matches!(
            Policy::parse("name = \"x\"\nrule = []\n"),
            Err(PolicyError::Empty)
        ));
    }
}
