//! word_count: the words and lines of a text, with the wasmq Zig SDK.
//!
//! {"text": "..."} -> {"words": N, "lines": M}. Words are runs of non-space characters;
//! lines end with a newline, and text after the last newline is a line too. Reports its
//! progress as it goes; a payload that is not such JSON fails terminally (retrying the
//! same payload would not help).
const std = @import("std");
const wasmq = @import("wasmq");

const Input = struct { text: []const u8 };
const Output = struct { words: usize, lines: usize };

/// Bytes between progress reports.
const step = 64 * 1024;

fn count(_: std.mem.Allocator, input: Input) Output {
    const text = input.text;
    var words: usize = 0;
    var lines: usize = 0;
    var in_word = false;
    for (text, 0..) |c, i| {
        if (i > 0 and i % step == 0) {
            const done = @as(f64, @floatFromInt(i)) / @as(f64, @floatFromInt(text.len));
            wasmq.progress(100 * done, "counting");
        }
        const space = std.ascii.isWhitespace(c);
        if (!space and !in_word) words += 1;
        in_word = !space;
        if (c == '\n') lines += 1;
    }
    if (text.len > 0 and text[text.len - 1] != '\n') lines += 1;
    wasmq.progress(100, "counted");
    return .{ .words = words, .lines = lines };
}

comptime {
    wasmq.handleJson(count);
}
