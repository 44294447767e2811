//! __NAME__: a wasmq task in Zig.
//!
//! {"name": "Ada"} -> {"greeting": "Hello, Ada!"}; a payload that is not such JSON, or
//! an empty name, fails terminally (retrying the same payload would not help).
const std = @import("std");
const wasmq = @import("wasmq");

const Request = struct { name: []const u8 };
const Response = struct { greeting: []const u8 };

fn handle(allocator: std.mem.Allocator, request: Request) !Response {
    if (request.name.len == 0) return wasmq.fail(.terminal, "the name is empty", .{});
    wasmq.progress(50, "found the name");
    wasmq.print("__NAME__ greets {s}\n", .{request.name});
    // Allocations come from an arena freed after the task: nothing to free here.
    const greeting = try std.fmt.allocPrint(allocator, "Hello, {s}!", .{request.name});
    return .{ .greeting = greeting };
}

comptime {
    wasmq.handleJson(handle);
}
