//! The statistics a study releases, by the names sites see: a job's statistic, a roster's
//! `schema`, the statistics a manifest foresees, and what policy rules' `statistics = [...]`
//! name. The names are part of the protocol (rosters carry them) and of every site's policy.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One kind of released statistic. Serialised, parsed and printed as its name ([`Self::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Statistic {
    /// Binary STAPLE sufficient statistics, one secure sum per EM iteration.
    Staple,
    /// Binary STAPLE, one round: the rater-pattern histogram.
    StaplePatternHistogram,
    /// Multi-label STAPLE seed and sufficient statistics.
    MultilabelStaple,
    /// Dawid–Skene sufficient statistics.
    DawidSkene,
    /// Per-reader overlap with the consensus segmentation (and its histograms).
    SegmentationMetrics,
    /// Per-reader confusion against the classification consensus and agreement statistics.
    Agreement,
    /// Benchmark vectors that carry nothing about the site (`fedanno bench secagg`).
    Bench,
}

impl Statistic {
    /// Every statistic, in declaration order.
    pub const ALL: [Statistic; 7] = [
        Statistic::Staple,
        Statistic::StaplePatternHistogram,
        Statistic::MultilabelStaple,
        Statistic::DawidSkene,
        Statistic::SegmentationMetrics,
        Statistic::Agreement,
        Statistic::Bench,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Statistic::Staple => "staple",
            Statistic::StaplePatternHistogram => "staple-pattern-histogram",
            Statistic::MultilabelStaple => "multilabel-staple",
            Statistic::DawidSkene => "dawid-skene",
            Statistic::SegmentationMetrics => "segmentation-metrics",
            Statistic::Agreement => "agreement",
            Statistic::Bench => "bench",
        }
    }
}

impl fmt::Display for Statistic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a statistic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown statistic {0:?}")]
pub struct UnknownStatistic(pub String);

impl FromStr for Statistic {
    type Err = UnknownStatistic;
    fn from_str(s: &str) -> Result<Self, UnknownStatistic> {
        Statistic::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| UnknownStatistic(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_print_and_serialise_alike() {
        for s in Statistic::ALL {
            assert_eq!(s.as_str().parse::<Statistic>(), Ok(s));
            assert_eq!(s.to_string(), s.as_str());
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<Statistic>(&json).unwrap(), s);
        }
        assert!("kappa".parse::<Statistic>().is_err());
        assert!("Staple".parse::<Statistic>().is_err());
    }
}
