//! Property tests (proptest) of the RFC 6962 / RFC 9162 Merkle tree, for
//! arbitrary trees of 1 to 300 leaves: every inclusion proof verifies and none
//! verifies for another leaf, index, size or root; every consistency proof from
//! a size m ≤ n verifies and none verifies for another old root, new root or
//! altered proof; the streaming [`Accumulator`] agrees with [`root`] at every size.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use confidant_audit::merkle::{
    Accumulator, Hash, consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency, verify_inclusion,
};
use proptest::prelude::*;
use proptest::sample::Index;

/// Modest by default (trees of up to 300 leaves, every proof of each); `PROPTEST_CASES=2000` searches longer.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(96);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Leaves of a tree of 1..=300 entries, each entry distinct (a seed and its position).
fn tree() -> impl Strategy<Value = Vec<Hash>> {
    (1usize..=300, any::<u64>()).prop_map(|(n, seed)| {
        (0..n as u64)
            .map(|i| {
                let mut e = seed.to_be_bytes().to_vec();
                e.extend_from_slice(&i.to_be_bytes());
                leaf_hash(&e)
            })
            .collect()
    })
}

fn flip(h: &Hash, bit: u8) -> Hash {
    let mut h = *h;
    h[usize::from(bit / 8) % 32] ^= 1 << (bit % 8);
    h
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_accumulator_agrees_with_root_at_every_size(leaves in tree()) {
        let mut acc = Accumulator::new();
        prop_assert_eq!(acc.root(), root(&[]));
        for n in 1..=leaves.len() {
            acc.push(leaves[n - 1]);
            prop_assert_eq!(acc.size(), n as u64);
            prop_assert_eq!(acc.root(), root(&leaves[..n]), "size {}", n);
        }
    }

    #[test]
    fn every_inclusion_proof_verifies(leaves in tree()) {
        let n = leaves.len();
        let r = root(&leaves);
        for (i, leaf) in leaves.iter().enumerate() {
            let p = inclusion_proof(&leaves, i).unwrap();
            prop_assert!(verify_inclusion(leaf, i as u64, n as u64, &p, &r), "leaf {} of {}", i, n);
        }
        prop_assert!(inclusion_proof(&leaves, n).is_none());
    }

    #[test]
    fn no_inclusion_proof_verifies_for_a_wrong_leaf_index_size_or_root(
        leaves in tree(),
        at in any::<Index>(),
        other in any::<Index>(),
        bit in any::<u8>(),
    ) {
        let n = leaves.len();
        let i = at.index(n);
        let r = root(&leaves);
        let p = inclusion_proof(&leaves, i).unwrap();
        let leaf = leaves[i];
        prop_assert!(verify_inclusion(&leaf, i as u64, n as u64, &p, &r));
        // Another leaf (an altered one, or another of the same tree).
        prop_assert!(!verify_inclusion(&flip(&leaf, bit), i as u64, n as u64, &p, &r));
        let j = other.index(n);
        if j != i {
            prop_assert!(!verify_inclusion(&leaves[j], i as u64, n as u64, &p, &r));
            prop_assert!(!verify_inclusion(&leaf, j as u64, n as u64, &p, &r), "leaf {} passed as {} of {}", i, j, n);
        }
        // Out of range, or under an altered root.
        prop_assert!(!verify_inclusion(&leaf, n as u64, n as u64, &p, &r));
        prop_assert!(!verify_inclusion(&leaf, i as u64, n as u64, &p, &flip(&r, bit)));
        // An altered, shortened or lengthened path.
        if !p.is_empty() {
            let mut bad = p.clone();
            let k = other.index(bad.len());
            bad[k] = flip(&bad[k], bit);
            prop_assert!(!verify_inclusion(&leaf, i as u64, n as u64, &bad, &r));
            prop_assert!(!verify_inclusion(&leaf, i as u64, n as u64, &p[..p.len() - 1], &r));
        }
        let mut longer = p.clone();
        longer.push(r);
        prop_assert!(!verify_inclusion(&leaf, i as u64, n as u64, &longer, &r));
        // The proof is for this size: a tree one larger has another root.
        let mut grown = leaves.clone();
        grown.push(leaf_hash(b"one more"));
        prop_assert!(!verify_inclusion(&leaf, i as u64, n as u64 + 1, &p, &root(&grown)));
    }

    #[test]
    fn every_consistency_proof_verifies_and_fails_for_a_changed_root(
        leaves in tree(),
        at in any::<Index>(),
        bit in any::<u8>(),
    ) {
        let n = leaves.len();
        let rn = root(&leaves);
        let m = at.index(n) + 1;
        let rm = root(&leaves[..m]);
        let p = consistency_proof(&leaves, m).unwrap();
        prop_assert!(verify_consistency(m as u64, n as u64, &rm, &rn, &p), "{} to {}", m, n);
        prop_assert!(!verify_consistency(m as u64, n as u64, &flip(&rm, bit), &rn, &p), "changed old root {} to {}", m, n);
        prop_assert!(!verify_consistency(m as u64, n as u64, &rm, &flip(&rn, bit), &p), "changed new root {} to {}", m, n);
        // An old tree that was rewritten (its last leaf forged) is not extended by the new one.
        let mut forked = leaves[..m].to_vec();
        forked[m - 1] = flip(&forked[m - 1], bit);
        prop_assert!(!verify_consistency(m as u64, n as u64, &root(&forked), &rn, &p));
        if !p.is_empty() {
            let mut bad = p.clone();
            let k = at.index(bad.len());
            bad[k] = flip(&bad[k], bit);
            prop_assert!(!verify_consistency(m as u64, n as u64, &rm, &rn, &bad));
        }
        // A bigger old size than the new is never consistent.
        prop_assert!(!verify_consistency(n as u64 + 1, n as u64, &rn, &rm, &p));
    }

    #[test]
    fn consistency_holds_for_every_pair_of_sizes(leaves in proptest::collection::vec(any::<[u8; 4]>(), 1..48)) {
        let d: Vec<Hash> = leaves.iter().map(|e| leaf_hash(e)).collect();
        for n in 1..=d.len() {
            let rn = root(&d[..n]);
            for m in 1..=n {
                let p = consistency_proof(&d[..n], m).unwrap();
                prop_assert!(verify_consistency(m as u64, n as u64, &root(&d[..m]), &rn, &p), "{} to {}", m, n);
            }
            prop_assert!(consistency_proof(&d[..n], 0).is_none());
            prop_assert!(consistency_proof(&d[..n], n + 1).is_none());
        }
    }
}
