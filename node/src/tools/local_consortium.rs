//! A whole consortium on one machine, made with the governance commands' own code: a root
//! (`consortium init`), sites (`init`), their requests (`node request`), certificates
//! (`consortium admit`) and installs (`consortium join`), and their nodes on loopback, each
//! started the way `node run` starts one. `fedanno demo`, the network benchmarks and the
//! multi-node tests all build their consortium here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fedanno_protocol::cert::Role;
use fedanno_protocol::ids::SiteId;

use crate::network::consortium::{self, Root};
use crate::network::daemon::{self, StartOptions};
use crate::network::node::Node;
use crate::site::{self, Site};

/// One site of a local consortium.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub roles: Vec<Role>,
}

impl Member {
    /// Sites `ids`, named `<prefix> <id>`; the first also coordinates.
    pub fn list(ids: &[&str], prefix: &str) -> Vec<Member> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| Member {
                id: id.to_string(),
                name: format!("{prefix} {id}"),
                roles: if i == 0 {
                    vec![Role::Site, Role::Coordinator]
                } else {
                    vec![Role::Site]
                },
            })
            .collect()
    }
}

/// A consortium root and its sites, each in its own directory under `dir`.
pub struct LocalConsortium {
    pub dir: PathBuf,
    pub name: String,
    pub sites: Vec<Site>,
}

impl LocalConsortium {
    /// Creates the root in `dir/consortium` and every member in `dir/sites/<id>`, each with a
    /// certificate valid for `days` days installed.
    pub fn create(dir: &Path, name: &str, members: &[Member], days: u64) -> Result<Self> {
        let root_dir = dir.join("consortium");
        consortium::new_root(name, &root_dir)?;
        let mut root = Root::open(&root_dir)?;
        let mut sites = Vec::new();
        for m in members {
            let site_dir = dir.join("sites").join(&m.id);
            site::init(&site_dir, &m.name, Some(&m.id))?;
            let id = SiteId::new(m.id.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
            let req = consortium::request(&site_dir, &id, &m.name)?;
            let (cert, _) = root.admit(&req, &m.roles, days)?;
            let cert_path = root_dir.join(format!("{}.cert", m.id));
            crate::site::files::write_bytes(&cert_path, &cert.to_bytes())?;
            consortium::join(
                &site_dir,
                &id,
                &root_dir.join(consortium::INFO_FILE),
                &cert_path,
                Some(&root_dir.join(consortium::CRL_FILE)),
            )
            .with_context(|| format!("{} joins", m.id))?;
            sites.push(Site::open(&site_dir)?);
        }
        Ok(LocalConsortium {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            sites,
        })
    }

    /// Starts every site's node on loopback TCP (port 0), each dialing those started before
    /// it, with `options(i)` for site `i`; waits until every node sees every other as a proven
    /// member.
    pub async fn start(
        &self,
        options: impl Fn(usize) -> StartOptions,
        connect_within: Duration,
    ) -> Result<Vec<Node>> {
        let mut nodes: Vec<Node> = Vec::new();
        for (i, site) in self.sites.iter().enumerate() {
            let bootstrap = nodes
                .iter()
                .flat_map(|n| n.handle.dial_addrs())
                .map(|a| a.to_string())
                .collect();
            let listen = vec!["/ip4/127.0.0.1/tcp/0".to_string()];
            let (node, _) = daemon::start_node(site, listen, bootstrap, &options(i))
                .await
                .with_context(|| format!("starting {}", site.config.site.id))?;
            nodes.push(node);
        }
        wait_connected(&nodes, connect_within).await?;
        Ok(nodes)
    }
}

/// Waits (on the nodes' activity signals, never polling) until every node sees every other as
/// a proven member.
pub async fn wait_connected(nodes: &[Node], within: Duration) -> Result<()> {
    let all = nodes.len();
    for n in nodes {
        if !n
            .handle
            .wait_until(within, |h| h.members().len() + 1 >= all)
            .await
        {
            bail!(
                "the nodes did not all connect within {} s",
                within.as_secs()
            );
        }
    }
    Ok(())
}

/// Launches a reader study at the first node (its coordinator), then has every node join it
/// and assign its cases; returns the study's id. Fails if a site is not reached or declines.
pub async fn launch_everywhere(nodes: &[Node], manifest: &str) -> Result<String> {
    let Some(coordinator) = nodes.first() else {
        bail!("no node to launch the study");
    };
    let (id, deliveries) = coordinator.handle.reader_study_launch(manifest).await?;
    if let Some(d) = deliveries.iter().find(|d| !d.delivered) {
        bail!("study {id}: {} was not reached: {:?}", d.site, d.error);
    }
    for n in nodes {
        let d = n.handle.reader_study_join(&id).await?;
        if !d.joined {
            bail!(
                "{} declined {id}: {}",
                n.handle.site(),
                d.reasons.join("; ")
            );
        }
    }
    for n in nodes {
        n.handle.reader_study_assign(&id).await?;
    }
    Ok(id)
}
