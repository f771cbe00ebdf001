//! Floats written as msgspec writes them: the shortest digits that read back to the same
//! value, in plain notation for decimal exponents -5..=15 (`0.00001`, `1000000000000000.0`),
//! else `1e16`, `1.5e-6`.

pub fn write(out: &mut Vec<u8>, value: f64) {
    let scientific = format!("{value:e}"); // shortest round-trip digits: "-1.2345e-7"
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("{:e} exponent is an integer");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    out.extend_from_slice(sign.as_bytes());
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-5..=15).contains(&exponent) {
        out.extend_from_slice(mantissa.as_bytes());
        out.push(b'e');
        out.extend_from_slice(exponent.to_string().as_bytes());
    } else if exponent < 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-exponent - 1) as usize));
        out.extend_from_slice(digits.as_bytes());
    } else {
        let point = exponent as usize + 1;
        if digits.len() <= point {
            out.extend_from_slice(digits.as_bytes());
            out.extend(std::iter::repeat_n(b'0', point - digits.len()));
            out.extend_from_slice(b".0");
        } else {
            out.extend_from_slice(&digits.as_bytes()[..point]);
            out.push(b'.');
            out.extend_from_slice(&digits.as_bytes()[point..]);
        }
    }
}
