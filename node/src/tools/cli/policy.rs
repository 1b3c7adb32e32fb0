//! `fedanno policy check POLICY`: every message kind to every role, with the deciding rule.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use serde::Serialize;

use super::{Sorted, emit};
use crate::network::kinds::MessageKind;
use crate::network::policy::{Decision, Outbound, Policy};
use fedanno_protocol::cert::Role;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the decision for every message kind and recipient role.
    Check {
        policy: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// What `policy check --json` prints.
#[derive(Serialize)]
struct Report {
    policy: String,
    decisions: Vec<Row>,
}

/// The decision on one message kind to one role (or to every member: "broadcast").
#[derive(Serialize)]
struct Row {
    kind: MessageKind,
    to: String,
    #[serde(flatten)]
    decision: Decision,
}

pub fn run(what: PolicyCommand) -> Result<ExitCode> {
    let PolicyCommand::Check { policy, json } = what;
    check(&policy, json)
}

fn check(path: &Path, json: bool) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let p = Policy::parse(&text)?;
    let mut decisions = Vec::new();
    for &kind in MessageKind::ALL {
        for role in Role::ALL.map(Some).into_iter().chain([None]) {
            let to_roles = role.map(|r| [r]);
            decisions.push(Row {
                kind,
                decision: p.decide(&Outbound::simple(kind, to_roles.as_ref().map(|r| &r[..]))),
                to: role.map_or("broadcast".to_string(), |r| r.to_string()),
            });
        }
    }
    let report = Report {
        policy: p.name.clone(),
        decisions,
    };
    emit(json, &Sorted(&report), |_| {
        println!("Policy {:?}: {}", p.name, p.description);
        for r in &report.decisions {
            println!(
                "  {:<20} to {:<12} {:<6} by {:<32} {}",
                r.kind,
                r.to,
                if r.decision.allowed { "ALLOW" } else { "deny" },
                r.decision.rule,
                r.decision.reasons.last().map_or("", String::as_str)
            );
        }
    })?;
    Ok(ExitCode::SUCCESS)
}
