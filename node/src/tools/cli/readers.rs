//! `fedanno readers …`: register and list the site's readers (people and models).

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;

use super::{emit, print_rows};
use crate::annotations::readers::{self, ReaderKind};
use crate::site::Site;

#[derive(Debug, Subcommand)]
pub enum ReadersCommand {
    /// Register a reader (a person or a model) at this site.
    Add {
        /// Reader id: for panel readers and models, the code the consortium assigned.
        id: String,
        #[arg(long, value_enum)]
        kind: ReaderKind,
        /// Display name (kept locally, never shared).
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List readers.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(site: &Site, cmd: ReadersCommand) -> Result<ExitCode> {
    match cmd {
        ReadersCommand::Add {
            id,
            kind,
            name,
            json,
        } => add(site, &id, kind, name, json).await?,
        ReadersCommand::List { json } => {
            let rows = site.store.readers().await?;
            emit(json, &rows, |rows| {
                let empty = "No readers yet. Add one with `fedanno readers add ID --kind local|panel|model`.";
                let header = format!("{:<24} {:<8} {:<28} NAME", "READER", "KIND", "PSEUDONYM");
                print_rows(rows, empty, Some(&header), |r| {
                    println!(
                        "{:<24} {:<8} {:<28} {}",
                        r.id,
                        r.kind,
                        r.pseudonym,
                        r.name.as_deref().unwrap_or_default()
                    );
                });
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn add(
    site: &Site,
    id: &str,
    kind: ReaderKind,
    name: Option<String>,
    json: bool,
) -> Result<()> {
    if !readers::valid_reader_id(id) {
        bail!(
            "invalid reader id {id:?}: use 1 to 64 characters of letters, digits, '-', '_' and '.' ('consensus' is reserved)"
        );
    }
    let pseudonym = match kind {
        ReaderKind::Local => site.pseudonymizer()?.local_reader(id),
        ReaderKind::Panel | ReaderKind::Model => readers::consortium_pseudonym(kind, id),
    };
    let r = site.store.add_reader(id, kind, name, pseudonym).await?;
    emit(json, &r, |r| {
        println!(
            "Added {} reader {} (pseudonym {})",
            r.kind, r.id, r.pseudonym
        );
    })
}
