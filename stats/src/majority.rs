//! Majority vote on categorical ratings: per unit, the category with the most votes; a tie for
//! the most votes, or a unit nobody rated, is undecided (`None`).
//!
//! Owns only the per-unit vote. It is local to a site (no federation needed).

use super::ratings::Ratings;

/// The unique index of the largest value, or `None` on a tie for the largest or when every
/// value is zero or below (`NaN`s never win).
pub fn unique_argmax(values: &[f64]) -> Option<usize> {
    let mut best: Option<usize> = None;
    let mut best_value = 0.0;
    let mut tied = false;
    for (i, &v) in values.iter().enumerate() {
        if v > best_value {
            best = Some(i);
            best_value = v;
            tied = false;
        } else if v == best_value && best.is_some() {
            tied = true;
        }
    }
    if tied { None } else { best }
}

/// The majority category of one unit's ratings (ties undecided).
pub fn vote(row: &[Option<u32>], k: usize) -> Option<u32> {
    let mut counts = vec![0.0; k];
    for c in row.iter().flatten() {
        if let Some(slot) = counts.get_mut(*c as usize) {
            *slot += 1.0;
        }
    }
    unique_argmax(&counts).map(|i| i as u32)
}

/// The majority category of every unit.
pub fn majority_vote(ratings: &Ratings) -> Vec<Option<u32>> {
    ratings
        .rows()
        .map(|row| vote(row, ratings.n_categories()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_and_empty_units_are_undecided() {
        let t = Ratings::from_cells(
            3,
            3,
            3,
            vec![
                Some(0),
                Some(0),
                Some(1),
                Some(0),
                Some(1),
                None,
                None,
                None,
                None,
            ],
        )
        .expect("valid");
        assert_eq!(majority_vote(&t), vec![Some(0), None, None]);
        assert_eq!(unique_argmax(&[0.2, 0.5, 0.5]), None);
        assert_eq!(unique_argmax(&[0.5, 0.5, 0.7]), Some(2));
        assert_eq!(unique_argmax(&[0.0, 0.0]), None);
    }
}
