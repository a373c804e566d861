//! Ordering floats by integers: the exact median of a streamed column and the AUC of a
//! streamed evaluation count values in bins of these keys.

/// A u32 that orders as the f32 does (negative values flipped; -0.0 before 0.0).
pub fn order_key(x: f32) -> u32 {
    let b = x.to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | 1 << 31
    }
}

/// The f32 of an [`order_key`].
pub fn from_order_key(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 1 { k & !(1 << 31) } else { !k })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_keys_sort_as_floats_and_round_trip() {
        let xs = [-3.5f32, -0.0, 0.0, 1e-30, 2.0, f32::MAX, -f32::MAX];
        for &x in &xs {
            assert_eq!(from_order_key(order_key(x)).to_bits(), x.to_bits());
        }
        let mut sorted = xs;
        sorted.sort_by_key(|x| order_key(*x));
        assert_eq!(sorted, [-f32::MAX, -3.5, -0.0, 0.0, 1e-30, 2.0, f32::MAX]);
    }
}
