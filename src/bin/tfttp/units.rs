//! SIZE and RATE values of the command line ("256M", "40Mbit"); the benchmarks include this
//! file too, so their options read the same way.

/// Splits "12.5Mi" into (12.5, "Mi").
fn split_number(s: &str) -> Result<(f64, &str), String> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let v: f64 = s[..end]
        .parse()
        .map_err(|_| format!("'{s}' does not start with a number"))?;
    Ok((v, &s[end..]))
}

/// A SIZE: bytes with binary suffixes K, M, G, T (KiB, MiB … and KB … are accepted too).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (v, unit) = split_number(s)?;
    let unit = unit.trim_end_matches(['B', 'b']).trim_end_matches('i');
    let mult = match unit.to_ascii_uppercase().as_str() {
        "" => 1u64,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("unknown size unit in '{s}' (use K, M, G, T)")),
    };
    Ok((v * mult as f64).round() as u64)
}

/// A RATE in bytes per second: SI suffixes k, M, G; binary Ki, Mi, Gi; a trailing "bit"
/// (or "bps") counts bits, a trailing "B" or "B/s" bytes.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let (v, unit) = split_number(s)?;
    let (unit, bits) = if let Some(u) = unit.strip_suffix("bit").or(unit.strip_suffix("bps")) {
        (u, true)
    } else {
        (unit.trim_end_matches("/s").trim_end_matches('B'), false)
    };
    let mult: f64 = match unit {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "unknown rate unit in '{s}' (e.g. 40M, 40Mbit, 5Mi)"
            ));
        }
    };
    let bytes = v * mult / if bits { 8.0 } else { 1.0 };
    if bytes < 1.0 {
        return Err(format!("rate '{s}' is below 1 byte per second"));
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_rate_units() {
        assert_eq!(parse_rate("40M"), Ok(40_000_000));
        assert_eq!(parse_rate("40Mbit"), Ok(5_000_000));
        assert_eq!(parse_rate("1Mi"), Ok(1 << 20));
        assert_eq!(parse_rate("2.5k"), Ok(2500));
        assert_eq!(parse_rate("100MB/s"), Ok(100_000_000));
        assert_eq!(parse_rate("800"), Ok(800));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("4X").is_err());
        assert!(parse_rate("0").is_err());
    }

    #[test]
    fn test_parse_size_units() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("1Q").is_err());
    }
}
