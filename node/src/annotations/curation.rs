//! Curation of stored annotations: version history with what changed, the adjudication queue
//! (cases whose readers disagree beyond a threshold) and adjudication decisions, which are
//! annotations of their own (purpose `adjudication`) by the adjudicating reader.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::annotations::diff::{self, Diff};
use crate::annotations::interchange::export::{ExportError, content_of};
use crate::annotations::model::{Content, Kind, Purpose, Segmentation};
use crate::site::store::{AnnotationFilter, NewVersion, SaveOutcome, Store, VersionRow};

/// A stored version and what it changed from the version before it.
#[derive(Debug, Serialize)]
pub struct HistoryEntry {
    #[serde(flatten)]
    pub row: VersionRow,
    pub change: Diff,
}

/// Every version of the annotations of a case (optionally of one reader), oldest first.
pub async fn history(
    store: &Store,
    case: &str,
    reader: Option<String>,
) -> Result<Vec<HistoryEntry>, ExportError> {
    let c = store.resolve_case(case).await?;
    let f = AnnotationFilter {
        reader,
        study_id: Some(c.study_id),
        series_id: c.series_id,
        ..Default::default()
    };
    let rows = store.versions(f, false).await?;
    let mut out = Vec::with_capacity(rows.len());
    let mut previous: Option<(i64, Content)> = None;
    for v in rows {
        let content = content_of(&v)?;
        let parent = previous
            .as_ref()
            .filter(|(a, _)| *a == v.annotation)
            .map(|(_, c)| c);
        let change = diff::diff(parent, &content);
        let annotation = v.annotation;
        out.push(HistoryEntry { row: v, change });
        previous = Some((annotation, content));
    }
    Ok(out)
}

/// A case on the adjudication queue.
#[derive(Debug, Serialize)]
pub struct Disagreement {
    pub kind: Kind,
    pub study: String,
    pub series: Option<String>,
    /// Segmentations: the lowest pairwise Dice over segments and reader pairs.
    pub min_dice: Option<f64>,
    /// Per reader pair and segment, the Dice (segmentations) or the two categories (labels).
    pub details: Vec<serde_json::Value>,
    pub readers: Vec<String>,
    pub adjudicated: bool,
}

/// Dice of two label maps for one segment value (NaN when both are empty).
pub fn dice(a: &[u8], b: &[u8], value: u8) -> f64 {
    let (mut inter, mut na, mut nb) = (0u64, 0u64, 0u64);
    for (&x, &y) in a.iter().zip(b) {
        let (ix, iy) = (x == value, y == value);
        na += u64::from(ix);
        nb += u64::from(iy);
        inter += u64::from(ix && iy);
    }
    if na + nb == 0 {
        f64::NAN
    } else {
        2.0 * inter as f64 / (na + nb) as f64
    }
}

/// Dice of one segment of two segmentations on one grid, its overlapping voxels included.
pub fn segment_dice(a: &Segmentation, b: &Segmentation, value: u8) -> f64 {
    let (x, y, inside) = Segmentation::segment_pair(a, b, value);
    dice(&x, &y, inside)
}

/// Cases whose readers' latest versions disagree: a segmentation pair with Dice below
/// `min_dice` for some segment, or labels of one scheme with different categories.
pub async fn disagreements(store: &Store, min_dice: f64) -> Result<Vec<Disagreement>, ExportError> {
    let heads = store
        .versions(
            AnnotationFilter {
                purpose: Some(Purpose::Read),
                ..Default::default()
            },
            true,
        )
        .await?;
    let decided: std::collections::HashSet<(String, Option<String>, Kind)> = store
        .versions(
            AnnotationFilter {
                purpose: Some(Purpose::Adjudication),
                ..Default::default()
            },
            true,
        )
        .await?
        .into_iter()
        .map(|v| (v.study, v.series, v.kind))
        .collect();
    // Cases in the order of their study, series, kind word and scheme.
    type Group = (String, Option<String>, &'static str, String, Kind);
    let mut groups: BTreeMap<Group, Vec<VersionRow>> = BTreeMap::new();
    for v in heads {
        let key = (
            v.study.clone(),
            v.series.clone(),
            v.kind.as_str(),
            v.scheme.clone(),
            v.kind,
        );
        groups.entry(key).or_default().push(v);
    }
    let mut out = Vec::new();
    for ((study, series, _, _scheme, kind), versions) in groups {
        if versions.len() < 2 || kind == Kind::Boxes {
            continue;
        }
        let contents: Vec<(String, Content)> = versions
            .iter()
            .map(|v| Ok((v.reader.clone(), content_of(v)?)))
            .collect::<Result<_, ExportError>>()?;
        let c = compare(&contents, min_dice);
        if c.disagree {
            let adjudicated = decided.contains(&(study.clone(), series.clone(), kind));
            out.push(Disagreement {
                kind,
                study,
                series,
                min_dice: c.min_dice,
                details: c.details,
                readers: contents.into_iter().map(|(r, _)| r).collect(),
                adjudicated,
            });
        }
    }
    Ok(out)
}

/// How the readers of one case compare.
struct Comparison {
    disagree: bool,
    min_dice: Option<f64>,
    details: Vec<serde_json::Value>,
}

/// Compares every pair of (reader, content): Dice per segment of segmentations on one grid,
/// categories of labels; any other pair disagrees.
fn compare(contents: &[(String, Content)], min_dice: f64) -> Comparison {
    let mut c = Comparison {
        disagree: false,
        min_dice: None,
        details: Vec::new(),
    };
    for (i, (ra, a)) in contents.iter().enumerate() {
        for (rb, b) in contents.iter().skip(i + 1) {
            match (a, b) {
                (Content::Segmentation(a), Content::Segmentation(b)) if a.dims == b.dims => {
                    let mut values: Vec<u8> = a
                        .segments
                        .iter()
                        .chain(&b.segments)
                        .map(|s| s.value)
                        .collect();
                    values.sort_unstable();
                    values.dedup();
                    for value in values {
                        let d = segment_dice(a, b, value);
                        if d.is_finite() {
                            c.min_dice = Some(c.min_dice.map_or(d, |m: f64| m.min(d)));
                            c.disagree |= d < min_dice;
                        }
                        c.details.push(serde_json::json!({
                            "readers": [ra, rb], "segment": value,
                            "dice": if d.is_finite() { serde_json::json!(d) } else { serde_json::json!("NaN") },
                        }));
                    }
                }
                (Content::Label(a), Content::Label(b)) => {
                    if a.category != b.category {
                        c.disagree = true;
                        c.details.push(serde_json::json!({
                            "readers": [ra, rb], "categories": [a.category, b.category],
                        }));
                    }
                }
                _ => {
                    c.disagree = true;
                    c.details
                        .push(serde_json::json!({ "readers": [ra, rb], "grid": "differs" }));
                }
            }
        }
    }
    c
}

/// Records `adjudicator`'s decision to accept `accepted`'s latest version of a case.
pub async fn accept(
    store: &Store,
    case: &str,
    kind: Kind,
    adjudicator: &str,
    accepted: &str,
    reason: Option<String>,
) -> Result<SaveOutcome, ExportError> {
    let c = store.resolve_case(case).await?;
    let adj = store
        .reader(adjudicator)
        .await
        .map_err(|e| ExportError::Usage(e.to_string()))?;
    let f = AnnotationFilter {
        reader: Some(accepted.to_string()),
        study_id: Some(c.study_id),
        series_id: c.series_id,
        kind: Some(kind),
        purpose: Some(Purpose::Read),
    };
    let mut heads = store.versions(f, true).await?;
    if heads.len() > 1 {
        return Err(ExportError::Ambiguous(heads.len()));
    }
    let v = heads.pop().ok_or(ExportError::NotFound {
        what: Purpose::Read.as_str(),
        filter: format!("case {case}, reader {accepted}"),
    })?;
    let content = content_of(&v)?;
    let new = NewVersion {
        reader: adj.db_id,
        kind: content.kind(),
        series: c.series_id,
        study: c.study_id,
        scheme: v.scheme.clone(),
        purpose: Purpose::Adjudication,
        author: adj.id.clone(),
        reason: reason.unwrap_or_else(|| format!("accepted {accepted}'s version {}", v.version)),
        source: format!("adjudication:{accepted}:v{}", v.version),
        content_hash: v.content_hash.clone(),
        content: v.content.clone(),
        summary: content.summary().to_string(),
    };
    let mut out = store.save_versions(vec![new]).await?;
    out.pop().ok_or(ExportError::Usage("nothing saved".into()))
}
