//! `json.dumps(value, indent=2, sort_keys=True)` as Python writes it: floats in `repr` form
//! (`1e-05`, `0.0001`, `1.0`), ASCII-only strings, keys sorted by code point.

use serde_json::Value;

/// Python's `repr(float)`: the shortest digits that round-trip, in fixed notation when the
/// decimal exponent is in `[-4, 16)`, else scientific with a signed two-digit exponent.
pub(crate) fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "d.ddddde-5".
    let sci = format!("{x:e}");
    // `{:e}` always has an integer exponent; Rust's own form is the fallback all the same.
    let Some((mantissa, exponent)) = sci.split_once('e') else {
        return sci;
    };
    let Ok(exponent) = exponent.parse::<i32>() else {
        return sci;
    };
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exponent) {
        // digits before the decimal point: exponent + 1 (none when the exponent is negative)
        match usize::try_from(exponent + 1) {
            Ok(point) if point > 0 => match digits.split_at_checked(point) {
                Some((int, frac)) if !frac.is_empty() => format!("{sign}{int}.{frac}"),
                _ => format!(
                    "{sign}{digits}{}.0",
                    "0".repeat(point.saturating_sub(digits.len()))
                ),
            },
            _ => {
                let zeros = usize::try_from(-1 - exponent).unwrap_or(0);
                format!("{sign}0.{}{digits}", "0".repeat(zeros))
            }
        }
    } else {
        let mantissa = match digits.split_at_checked(1) {
            Some((first, rest)) if !rest.is_empty() => format!("{first}.{rest}"),
            _ => digits,
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exponent.abs())
    }
}

/// Writes `value` as `json.dumps(value, indent=2, sort_keys=True)` does.
pub(crate) fn python_dumps_pretty(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value, 0);
    out
}

fn write_value(out: &mut String, value: &Value, depth: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (None, Some(u), _) => out.push_str(&u.to_string()),
            (None, None, Some(f)) => out.push_str(&python_float_repr(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => write_string(out, s),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                indent(out, depth + 1);
                write_value(out, item, depth + 1);
            }
            out.push('\n');
            indent(out, depth);
            out.push(']');
        }
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // Python sorts str keys by code point; Rust's `str` order is by UTF-8 bytes, which
            // is the same order.
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                indent(out, depth + 1);
                write_string(out, key);
                out.push_str(": ");
                write_value(out, item, depth + 1);
            }
            out.push('\n');
            indent(out, depth);
            out.push('}');
        }
    }
}

fn indent(out: &mut String, depth: usize) {
    out.push_str(&"  ".repeat(depth));
}

/// A JSON string with `ensure_ascii=True` escaping.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        // Expected strings are what CPython 3.11 prints for repr() of these floats.
        let cases = [
            (0.0001, "0.0001"),
            (1e-5, "1e-05"),
            (0.00085, "0.00085"),
            (1.0, "1.0"),
            (2.0, "2.0"),
            (0.995, "0.995"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345.6, "123456789012345.6"),
            (-0.012, "-0.012"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1.2345e-7, "1.2345e-07"),
            (f64::from(0.1f32), "0.10000000149011612"),
        ];
        for (x, want) in cases {
            assert_eq!(python_float_repr(x), want, "{x:?}");
        }
    }

    #[test]
    fn dumps_sorts_indents_and_escapes() {
        let v: Value =
            serde_json::from_str(r#"{"b": [1, 2.5], "a": {}, "_c": "é", "d": []}"#).unwrap();
        let want = "{\n  \"_c\": \"\\u00e9\",\n  \"a\": {},\n  \"b\": [\n    1,\n    2.5\n  ],\n  \"d\": []\n}";
        assert_eq!(python_dumps_pretty(&v), want);
    }
}
