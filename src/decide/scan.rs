//! C's sscanf, as iptables reads option values with it (`-w %i`, `-W %u`): the few
//! lines of glibc's number scanning that decide whether a word is a value.

/// sscanf("%i") into an int: leading space, a sign, then hex (0x), octal (0) or decimal.
/// Some(value) when at least one digit converted (wrapping as glibc stores it).
pub fn scan_int(text: &[u8]) -> Option<i32> {
    let (negative, digits) = sign(text);
    let (radix, digits) = match digits {
        [b'0', b'x' | b'X', rest @ ..] if rest.first().is_some_and(u8::is_ascii_hexdigit) => {
            (16, rest)
        }
        [b'0', ..] => (8, digits),
        _ => (10, digits),
    };
    let value = scan_digits(digits, radix)?;
    let value = if negative {
        value.wrapping_neg()
    } else {
        value
    };
    Some(value as i32)
}

/// sscanf("%u") into an unsigned int: strtoul's value, truncated to 32 bits.
pub fn scan_unsigned(text: &[u8]) -> Option<u32> {
    let (negative, digits) = sign(text);
    let value = scan_digits(digits, 10)?;
    Some(if negative {
        value.wrapping_neg()
    } else {
        value
    } as u32)
}

fn sign(text: &[u8]) -> (bool, &[u8]) {
    let start = text
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
        .unwrap_or(text.len());
    match &text[start..] {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        rest => (false, rest),
    }
}

/// Leading digits of `radix`, saturating at u64::MAX as strtoul does.
fn scan_digits(digits: &[u8], radix: u32) -> Option<u64> {
    let count = digits
        .iter()
        .take_while(|b| (**b as char).is_digit(radix))
        .count();
    if count == 0 {
        return None;
    }
    let value = digits[..count].iter().fold(0u64, |acc, &b| {
        let digit = (b as char).to_digit(radix).unwrap_or(0) as u64;
        acc.checked_mul(radix as u64)
            .and_then(|v| v.checked_add(digit))
            .unwrap_or(u64::MAX)
    });
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_like_sscanf() {
        assert_eq!(scan_int(b"5"), Some(5));
        assert_eq!(scan_int(b" 0x1f"), Some(31));
        assert_eq!(scan_int(b"010"), Some(8));
        assert_eq!(scan_int(b"-3x"), Some(-3));
        assert_eq!(scan_int(b"rules"), None);
        assert_eq!(scan_int(b""), None);
        assert_eq!(scan_unsigned(b"100"), Some(100));
        assert_eq!(scan_unsigned(b"-1"), Some(u32::MAX));
        assert_eq!(scan_unsigned(b"4294967296"), Some(0));
    }
}
