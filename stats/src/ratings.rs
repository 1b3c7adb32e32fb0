//! Categorical ratings: a units × raters table of category indices with missing cells.
//!
//! Owns the in-memory shape every categorical statistic reads, and the mapping from string triples
//! `(unit, rater, value)` (the CSV of README.md, "Offline QA commands") to indices. Parsing files
//! is the caller's job; this module only sees strings.

use super::StatsError;
use std::collections::HashMap;

/// A units × raters table; each cell is a category index (position in the ordered category
/// list) or `None` when the rater did not rate the unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ratings {
    n_units: usize,
    n_raters: usize,
    n_categories: usize,
    cells: Vec<Option<u32>>,
}

impl Ratings {
    /// An empty table (every cell missing).
    pub fn new(n_units: usize, n_raters: usize, n_categories: usize) -> Self {
        Self {
            n_units,
            n_raters,
            n_categories,
            cells: vec![None; n_units * n_raters],
        }
    }

    /// A table from row-major cells (`cells[unit * n_raters + rater]`).
    pub fn from_cells(
        n_units: usize,
        n_raters: usize,
        n_categories: usize,
        cells: Vec<Option<u32>>,
    ) -> Result<Self, StatsError> {
        if cells.len() != n_units * n_raters {
            return Err(StatsError::Shape("cells != units x raters"));
        }
        if cells.iter().flatten().any(|&c| c as usize >= n_categories) {
            return Err(StatsError::OutOfRange("category index"));
        }
        Ok(Self {
            n_units,
            n_raters,
            n_categories,
            cells,
        })
    }

    /// Sets one cell.
    pub fn set(
        &mut self,
        unit: usize,
        rater: usize,
        category: Option<u32>,
    ) -> Result<(), StatsError> {
        if unit >= self.n_units || rater >= self.n_raters {
            return Err(StatsError::OutOfRange("unit or rater index"));
        }
        if category.is_some_and(|c| c as usize >= self.n_categories) {
            return Err(StatsError::OutOfRange("category index"));
        }
        self.cells[unit * self.n_raters + rater] = category;
        Ok(())
    }

    /// Number of units (rows).
    pub fn n_units(&self) -> usize {
        self.n_units
    }

    /// Number of raters (columns).
    pub fn n_raters(&self) -> usize {
        self.n_raters
    }

    /// Number of categories.
    pub fn n_categories(&self) -> usize {
        self.n_categories
    }

    /// One unit's ratings, indexed by rater.
    pub fn unit(&self, unit: usize) -> &[Option<u32>] {
        let start = (unit * self.n_raters).min(self.cells.len());
        let end = (start + self.n_raters).min(self.cells.len());
        &self.cells[start..end]
    }

    /// Iterates over the units' rows.
    pub fn rows(&self) -> impl Iterator<Item = &[Option<u32>]> {
        self.cells.chunks(self.n_raters.max(1)).take(self.n_units)
    }

    /// The sub-table of the given units (same raters and categories), e.g. one site's cases.
    pub fn select_units(&self, units: &[usize]) -> Result<Self, StatsError> {
        let mut cells = Vec::with_capacity(units.len() * self.n_raters);
        for &u in units {
            if u >= self.n_units {
                return Err(StatsError::OutOfRange("unit index"));
            }
            cells.extend_from_slice(self.unit(u));
        }
        Ok(Self {
            n_units: units.len(),
            n_raters: self.n_raters,
            n_categories: self.n_categories,
            cells,
        })
    }
}

/// A [`Ratings`] table together with the string ids of its units, raters and categories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabeledRatings {
    /// The index table.
    pub ratings: Ratings,
    /// Unit ids in row order (first appearance).
    pub units: Vec<String>,
    /// Rater ids in column order (first appearance).
    pub raters: Vec<String>,
    /// The ordered categories.
    pub categories: Vec<String>,
}

/// Why a set of rating triples cannot be tabulated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RatingsError {
    /// A value is not one of the categories (the row number is 0-based over the triples).
    #[error("rating {row}: value is not one of the categories")]
    UnknownCategory {
        /// Index of the offending triple.
        row: usize,
    },
    /// The same rater rated the same unit twice.
    #[error("rating {row}: duplicate (unit, rater)")]
    Duplicate {
        /// Index of the offending triple.
        row: usize,
    },
    /// The category list is empty or has duplicates.
    #[error("categories must be non-empty and distinct")]
    BadCategories,
}

impl LabeledRatings {
    /// Tabulates `(unit, rater, value)` triples against an ordered category list. A value
    /// matches a category when the strings are equal or both parse to the same number.
    pub fn from_triples<S: AsRef<str>>(
        triples: &[(S, S, S)],
        categories: &[String],
    ) -> Result<Self, RatingsError> {
        let mut cat_index: HashMap<&str, u32> = HashMap::new();
        for (i, c) in categories.iter().enumerate() {
            if cat_index.insert(c.as_str(), i as u32).is_some() {
                return Err(RatingsError::BadCategories);
            }
        }
        if categories.is_empty() {
            return Err(RatingsError::BadCategories);
        }
        let numeric: Vec<Option<f64>> = categories.iter().map(|c| c.trim().parse().ok()).collect();
        let lookup = |v: &str| -> Option<u32> {
            if let Some(&i) = cat_index.get(v) {
                return Some(i);
            }
            let x: f64 = v.trim().parse().ok()?;
            numeric.iter().position(|n| *n == Some(x)).map(|i| i as u32)
        };
        let mut units: Vec<String> = Vec::new();
        let mut raters: Vec<String> = Vec::new();
        let mut unit_ix: HashMap<&str, usize> = HashMap::new();
        let mut rater_ix: HashMap<&str, usize> = HashMap::new();
        let mut coded = Vec::with_capacity(triples.len());
        for (row, (u, r, v)) in triples.iter().enumerate() {
            let cat = lookup(v.as_ref()).ok_or(RatingsError::UnknownCategory { row })?;
            let next_u = unit_ix.len();
            let ui = *unit_ix.entry(u.as_ref()).or_insert_with(|| {
                units.push(u.as_ref().to_owned());
                next_u
            });
            let next_r = rater_ix.len();
            let ri = *rater_ix.entry(r.as_ref()).or_insert_with(|| {
                raters.push(r.as_ref().to_owned());
                next_r
            });
            coded.push((ui, ri, cat));
        }
        let mut ratings = Ratings::new(units.len(), raters.len(), categories.len());
        for (row, (ui, ri, cat)) in coded.into_iter().enumerate() {
            if ratings.unit(ui).get(ri).copied().flatten().is_some() {
                return Err(RatingsError::Duplicate { row });
            }
            ratings
                .set(ui, ri, Some(cat))
                .map_err(|_| RatingsError::UnknownCategory { row })?;
        }
        Ok(Self {
            ratings,
            units,
            raters,
            categories: categories.to_vec(),
        })
    }

    /// The numeric values of the categories, when every category parses as a finite number
    /// (needed by interval and ratio Krippendorff's alpha).
    pub fn numeric_categories(&self) -> Option<Vec<f64>> {
        numeric_values(&self.categories)
    }
}

/// Parses every category as a finite number, or `None`.
pub fn numeric_values(categories: &[String]) -> Option<Vec<f64>> {
    categories
        .iter()
        .map(|c| c.trim().parse::<f64>().ok().filter(|x| x.is_finite()))
        .collect()
}

/// The default category list: the distinct values, sorted numerically when all are numbers,
/// otherwise as strings.
pub fn default_categories<S: AsRef<str>>(values: &[S]) -> Vec<String> {
    let mut distinct: Vec<String> = values.iter().map(|v| v.as_ref().to_owned()).collect();
    distinct.sort();
    distinct.dedup();
    if let Some(nums) = numeric_values(&distinct) {
        let mut paired: Vec<(f64, String)> = nums.into_iter().zip(distinct).collect();
        paired.sort_by(|a, b| a.0.total_cmp(&b.0));
        paired.dedup_by(|a, b| a.0 == b.0);
        paired.into_iter().map(|(_, s)| s).collect()
    } else {
        distinct
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabulates_triples_in_first_appearance_order() {
        let t = [("u1", "b", "2"), ("u1", "a", "1.0"), ("u2", "a", "2")];
        let cats = vec!["1".to_owned(), "2".to_owned()];
        let lr = LabeledRatings::from_triples(&t, &cats).expect("valid");
        assert_eq!(lr.units, vec!["u1", "u2"]);
        assert_eq!(lr.raters, vec!["b", "a"]);
        assert_eq!(lr.ratings.unit(0), &[Some(1), Some(0)]);
        assert_eq!(lr.ratings.unit(1), &[None, Some(1)]);
        let dup = [("u1", "a", "1"), ("u1", "a", "2")];
        assert_eq!(
            LabeledRatings::from_triples(&dup, &cats),
            Err(RatingsError::Duplicate { row: 1 })
        );
        let bad = [("u1", "a", "7")];
        assert!(LabeledRatings::from_triples(&bad, &cats).is_err());
    }

    #[test]
    fn default_categories_sort_numerically() {
        assert_eq!(
            default_categories(&["10", "9", "10", "1"]),
            vec!["1", "9", "10"]
        );
        assert_eq!(default_categories(&["b", "a"]), vec!["a", "b"]);
    }
}
