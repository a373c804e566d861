//! Unit formatting shared by the plan printout, the GPU's errors and the benchmarks.

const MIB: f64 = 1024.0 * 1024.0;

/// 1234567 → "1.23M".
pub fn human(x: u64) -> String {
    let x = x as f64;
    match x {
        x if x >= 1e9 => format!("{:.2}G", x / 1e9),
        x if x >= 1e6 => format!("{:.2}M", x / 1e6),
        x if x >= 1e3 => format!("{:.2}K", x / 1e3),
        x => format!("{x}"),
    }
}

/// 1064008.0 → "1.01 MiB" (binary units, two decimals).
pub fn human_bytes(b: f64) -> String {
    match b {
        b if b >= 1024.0 * MIB => format!("{:.2} GiB", b / (1024.0 * MIB)),
        b if b >= MIB => format!("{:.2} MiB", b / MIB),
        b if b >= 1024.0 => format!("{:.2} KiB", b / 1024.0),
        b => format!("{b:.0} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(0.0), "0 B");
        assert_eq!(human_bytes(1000.0), "1000 B");
        assert_eq!(human_bytes(2048.0), "2.00 KiB");
        assert_eq!(human_bytes(1_064_008.0), "1.01 MiB");
        assert_eq!(human_bytes(3.0 * 1024.0 * MIB), "3.00 GiB");
    }

    #[test]
    fn human_uses_decimal_prefixes() {
        assert_eq!(human(999), "999");
        assert_eq!(human(1_234_567), "1.23M");
        assert_eq!(human(2_500_000_000), "2.50G");
    }
}
