//! Floats written as msgspec writes them: the shortest digits that read back to the same
//! value, in plain notation for decimal exponents -5..=15 (`0.00001`, `1000000000000000.0`),
//! else `1e16`, `1.5e-6`.
//!
//! A value exactly halfway between two shortest candidates (`2**-24`, `2**49 + 0.25`) is
//! refused: which one msgspec writes depends on its algorithm's path, so the reference writes
//! those readings.

use std::io::Write;

/// Digits of the exact value checked past a tie's `5` (a tie needs them all zero).
const TIE_DIGITS: usize = 40;

/// Appends `value` (finite); `false` (nothing appended) for a tie.
#[must_use]
pub fn write(out: &mut Vec<u8>, value: f64) -> bool {
    let mut buffer = [0_u8; 48];
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    write!(cursor, "{:e}", value.abs()).expect("48 bytes hold any f64"); // "1.2345e-7"
    let length = cursor.position() as usize;
    let split = buffer[..length].iter().position(|b| *b == b'e').expect("an exponent");
    let exponent: i32 = std::str::from_utf8(&buffer[split + 1..length])
        .ok()
        .and_then(|e| e.parse().ok())
        .expect("{:e} exponent is an integer");
    let digits: Vec<u8> = buffer[..split].iter().copied().filter(|b| *b != b'.').collect();
    if digits.len() >= 15 && is_tie(value.abs(), digits.len()) {
        return false;
    }
    if value.is_sign_negative() {
        out.push(b'-');
    }
    lay_out(out, &digits, exponent);
    true
}

/// Whether the exact value lies halfway between two `n`-digit candidates (only possible when
/// `n` is near the 17 digits a double can need).
fn is_tie(value: f64, n: usize) -> bool {
    let exact = format!("{:.*e}", n + TIE_DIGITS, value);
    let mantissa: Vec<u8> =
        exact.bytes().take_while(|b| *b != b'e').filter(|b| *b != b'.').collect();
    mantissa[n] == b'5' && mantissa[n + 1..].iter().all(|b| *b == b'0')
}

fn lay_out(out: &mut Vec<u8>, digits: &[u8], exponent: i32) {
    if !(-5..=15).contains(&exponent) {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        write!(out, "e{exponent}").expect("writing to a Vec");
    } else if exponent < 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-exponent - 1) as usize));
        out.extend_from_slice(digits);
    } else {
        let point = exponent as usize + 1;
        if digits.len() <= point {
            out.extend_from_slice(digits);
            out.extend(std::iter::repeat_n(b'0', point - digits.len()));
            out.extend_from_slice(b".0");
        } else {
            out.extend_from_slice(&digits[..point]);
            out.push(b'.');
            out.extend_from_slice(&digits[point..]);
        }
    }
}
