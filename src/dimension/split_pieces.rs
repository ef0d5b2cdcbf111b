//! A partition's window split by value, as it travels: in pieces that each fit one record
//! of the shuffle topic (a split of many values holding raw latencies can be larger than one),
//! put together again by the window's merger. Every piece says how many there are, so the
//! merger knows when it has them all.

use super::selection::PartitionSplit;
use crate::event_time::window::WindowPart;
use std::collections::BTreeMap;

/// One piece of a partition's split (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct SplitPiece {
    /// Which piece (0, 1, …).
    pub piece: u32,
    /// How many pieces the split has.
    pub pieces: u32,
    /// The records of values the partition gave up (piece 0 only).
    pub other: Option<WindowPart>,
    /// The most records a value not kept can have had (piece 0 only; 0 in the others).
    pub untracked_at_most: u64,
    /// Values kept: (key, part, inherited weight).
    pub values: Vec<(String, WindowPart, u64)>,
}

/// Cuts `split` into pieces of values whose sizes (`size_of` each value) add up to at most
/// `budget` each (a value larger than the budget goes alone); piece 0 also carries the other
/// part. The same split always gives the same pieces.
pub fn into_pieces(
    split: PartitionSplit,
    budget: usize,
    size_of: impl Fn(&str, &WindowPart) -> usize,
) -> Vec<SplitPiece> {
    let mut groups: Vec<Vec<(String, WindowPart, u64)>> = vec![Vec::new()];
    let mut used = 0;
    for (key, (part, inherited)) in split.values {
        let size = size_of(&key, &part);
        let current = groups.last().expect("never empty");
        if !current.is_empty() && used + size > budget {
            groups.push(Vec::new());
            used = 0;
        }
        used += size;
        groups
            .last_mut()
            .expect("never empty")
            .push((key, part, inherited));
    }
    let pieces = groups.len() as u32;
    let mut other = Some(split.other);
    groups
        .into_iter()
        .enumerate()
        .map(|(i, values)| SplitPiece {
            piece: i as u32,
            pieces,
            other: other.take(),
            untracked_at_most: if i == 0 { split.untracked_at_most } else { 0 },
            values,
        })
        .collect()
}

/// The pieces of one partition's split received so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SplitAssembly {
    received: BTreeMap<u32, SplitPiece>,
}

impl SplitAssembly {
    /// Adds a piece (a replayed piece replaces its earlier copy).
    pub fn add(&mut self, piece: SplitPiece) {
        self.received.insert(piece.piece, piece);
    }

    /// The pieces received (their numbers), for deleting them once the window is written.
    pub fn piece_numbers(&self) -> Vec<u32> {
        self.received.keys().copied().collect()
    }

    /// The split, once every piece is in and they agree on their number; `None` before.
    pub fn assemble(mut self) -> Option<PartitionSplit> {
        let pieces = self.received.get(&0)?.pieces;
        let complete = self.received.len() as u32 == pieces
            && self
                .received
                .iter()
                .all(|(&n, p)| n < pieces && p.pieces == pieces);
        if !complete {
            return None;
        }
        let first = self.received.remove(&0)?;
        let mut split = PartitionSplit {
            values: BTreeMap::new(),
            other: first.other?,
            untracked_at_most: first.untracked_at_most,
        };
        for piece in
            std::iter::once(first.values).chain(self.received.into_values().map(|p| p.values))
        {
            for (key, part, inherited) in piece {
                split.values.insert(key, (part, inherited));
            }
        }
        Some(split)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distribution::digest::DigestConfig;

    fn part(latencies: &[i64]) -> WindowPart {
        let mut part = WindowPart::new(DigestConfig::default());
        latencies.iter().for_each(|&l| part.add(l, 100));
        part
    }

    fn split(values: usize) -> PartitionSplit {
        PartitionSplit {
            values: (0..values)
                .map(|i| (format!("v{i:03}"), (part(&[i as i64, 200]), i as u64 % 3)))
                .collect(),
            other: part(&[7, 700]),
            untracked_at_most: 2,
        }
    }

    #[test]
    fn pieces_fit_the_budget_and_assemble_to_the_split_in_any_order() {
        let whole = split(50);
        let pieces = into_pieces(whole.clone(), 100, |key, _| key.len() * 10);
        assert_eq!(pieces.len(), 25, "two 40-byte values per 100-byte piece");
        assert!(pieces.iter().all(|p| p.pieces == 25));
        assert!(pieces.iter().skip(1).all(|p| p.other.is_none()));
        let mut assembly = SplitAssembly::default();
        for piece in pieces.iter().rev() {
            assert!(assembly.clone().assemble().is_none(), "incomplete");
            assembly.add(piece.clone());
        }
        assembly.add(pieces[3].clone()); // a replay
        assert_eq!(assembly.piece_numbers().len(), 25);
        assert_eq!(assembly.assemble(), Some(whole));
    }

    #[test]
    fn a_value_larger_than_the_budget_goes_alone_and_an_empty_split_is_one_piece() {
        let pieces = into_pieces(split(3), 10, |_, _| 1_000);
        assert_eq!(pieces.len(), 3);
        let empty = into_pieces(split(0), 10, |_, _| 1_000);
        assert_eq!(empty.len(), 1);
        assert!(empty[0].other.is_some());
        let mut assembly = SplitAssembly::default();
        assembly.add(empty[0].clone());
        assert_eq!(assembly.assemble(), Some(split(0)));
    }

    #[test]
    fn pieces_that_disagree_on_their_number_do_not_assemble() {
        let mut pieces = into_pieces(split(4), 80, |key, _| key.len() * 10);
        assert_eq!(pieces.len(), 2);
        pieces[1].pieces = 3;
        let mut assembly = SplitAssembly::default();
        pieces.into_iter().for_each(|p| assembly.add(p));
        assert_eq!(assembly.assemble(), None);
    }
}
