//! task_1_zig: the reference task in Zig. Reads {"name": ...}, prints a greeting
//! line, returns {"message":"Hello, <name>!"}. Built as a wasm32-wasi reactor.
const std = @import("std");

const allocator = std.heap.wasm_allocator;

export fn alloc(size: u32) u32 {
    const buf = allocator.alloc(u8, if (size == 0) 1 else size) catch return 0;
    return @intCast(@intFromPtr(buf.ptr));
}

const Request = struct { name: []const u8 = "World" };

fn write(fd: std.os.wasi.fd_t, bytes: []const u8) void {
    var written: usize = 0;
    const iov = [_]std.os.wasi.ciovec_t{.{ .base = bytes.ptr, .len = bytes.len }};
    _ = std.os.wasi.fd_write(fd, &iov, 1, &written);
}

export fn execute(ptr: u32, len: u32) u64 {
    const payload = @as([*]const u8, @ptrFromInt(ptr))[0..len];
    const opts: std.json.ParseOptions = .{ .ignore_unknown_fields = true };
    const parsed = std.json.parseFromSlice(Request, allocator, payload, opts) catch null;
    const name = if (parsed) |p| p.value.name else "World";
    const greeting = "Hello, {s}! (from task_1 in Zig)\n";
    const line = std.fmt.allocPrint(allocator, greeting, .{name}) catch return 0;
    write(1, line);
    const message = std.fmt.allocPrint(allocator, "Hello, {s}!", .{name}) catch return 0;
    const out = std.json.Stringify.valueAlloc(allocator, .{ .message = message }, .{}) catch return 0;
    return (@as(u64, @intFromPtr(out.ptr)) << 32) | out.len;
}
