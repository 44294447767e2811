//! wasmq: the guest SDK for Zig handlers (guest ABI 1).
//!
//! A handler takes an allocator and the payload and returns the result bytes, or an error:
//!
//!     const std = @import("std");
//!     const wasmq = @import("wasmq");
//!
//!     fn handle(allocator: std.mem.Allocator, payload: []const u8) wasmq.Error![]const u8 {
//!         if (payload.len == 0) return wasmq.fail(.terminal, "empty payload", .{});
//!         return std.fmt.allocPrint(allocator, "{d} bytes", .{payload.len});
//!     }
//!
//!     comptime {
//!         wasmq.handle(handle);
//!     }
//!
//! `handle` defines the module's `alloc` and `execute` exports. The allocator is an arena
//! that lives until the host has copied the result: nothing needs freeing, and the result
//! may be any slice that outlives the handler (arena memory, the payload, a constant).
//!
//! Errors: a returned Zig error is retryable, with the error's name as the message;
//! `wasmq.fail(.terminal or .retryable, fmt, args)` chooses the kind and the message.
//! A module imports `wasmq.fail` only when its handler can return an error, and
//! `wasmq.progress` only when it reports progress.
const std = @import("std");

/// What a handler may return as its error: any error.
pub const Error = anyerror;

/// How a failed task goes on.
pub const Kind = enum(i32) {
    /// No retry: the task goes to the dead-letter queue.
    terminal = 0,
    /// Retried with backoff, up to the task's max_retries.
    retryable = 1,
};

/// The host keeps at most this many bytes of an error message, and marks a longer one as
/// cut.
pub const message_max = 1024;

const host = struct {
    extern "wasmq" fn fail(kind: i32, ptr: [*]const u8, len: usize) i32;
    extern "wasmq" fn progress(value: f64, ptr: [*]const u8, len: usize) i32;
};

/// The error `fail` returns; the kind and message it recorded go to the host.
pub const Failed = error{HandlerFailed};

var failure_kind: Kind = .retryable;
var failure_len: ?usize = null;
// One byte over what the host keeps is enough for it to see the cut.
var failure_buf: [message_max + 1]u8 = undefined;

/// Records why the task failed and returns the error for the handler to return:
/// `return wasmq.fail(.terminal, "no field {s}", .{name});`
pub fn fail(kind: Kind, comptime fmt: []const u8, args: anytype) Failed {
    var w: std.Io.Writer = .fixed(&failure_buf);
    // A longer message fills the buffer and stops; the host cuts it and marks the cut.
    w.print(fmt, args) catch {};
    failure_kind = kind;
    failure_len = w.end;
    return error.HandlerFailed;
}

/// Reports progress: `value` any finite number (by convention a percentage), `message`
/// short text or "". Cheap enough for a loop: the host keeps the latest report and stores
/// it a few times a second. A NaN or infinite value is ignored.
pub fn progress(value: f64, message: []const u8) void {
    _ = host.progress(value, message.ptr, message.len);
}

/// Writes formatted text to the task's stdout (kept with the task, like every line it
/// prints). Lighter than `std.debug.print`, which goes to stderr and brings in most of
/// `std.Io`. Output that does not fit in memory is dropped.
pub fn print(comptime fmt: []const u8, args: anytype) void {
    const text = std.fmt.allocPrint(task_arena.allocator(), fmt, args) catch return;
    var rest = text;
    while (rest.len > 0) {
        const iov = [_]std.os.wasi.ciovec_t{.{ .base = rest.ptr, .len = rest.len }};
        var written: usize = 0;
        if (std.os.wasi.fd_write(1, &iov, 1, &written) != .SUCCESS or written == 0) return;
        rest = rest[written..];
    }
}

// The arena of the current task: it holds the payload, what the handler allocates and
// the result, and is reset when the host hands over the next payload.
var task_arena: std.heap.ArenaAllocator = .init(std.heap.wasm_allocator);

fn allocPayload(len: u32) callconv(.c) u32 {
    _ = task_arena.reset(.retain_capacity);
    const buf = task_arena.allocator().alloc(u8, len) catch @trap();
    return @intCast(@intFromPtr(buf.ptr));
}

fn pack(result: []const u8) u64 {
    if (result.len == 0) return 0;
    return (@as(u64, @intFromPtr(result.ptr)) << 32) | @as(u64, @intCast(result.len));
}

fn report(err: anyerror) void {
    if (err == error.HandlerFailed) {
        if (failure_len) |len| {
            _ = host.fail(@backingInt(failure_kind), &failure_buf, len);
            return;
        }
    }
    const name = @errorName(err);
    _ = host.fail(@backingInt(Kind.retryable), name.ptr, name.len);
}

/// Whether `T`, a handler's return type, is an error union (else a plain value).
fn fallible(comptime T: type) bool {
    return @typeInfo(T) == .error_union;
}

/// The parameter types of function type `F`, or a compile error saying what `shape` the
/// handler must have.
fn params(comptime F: type, comptime shape: []const u8) []const ?type {
    const info = switch (@typeInfo(F)) {
        .@"fn" => |f| f,
        else => @compileError(shape ++ ", not " ++ @typeName(F)),
    };
    // Newer Zig lists parameter types apart (`param_types`), older Zig as `params`.
    const types: []const ?type = if (@hasField(@TypeOf(info), "param_types"))
        info.param_types
    else types: {
        var list: [info.params.len]?type = undefined;
        for (info.params, 0..) |p, i| list[i] = p.type;
        const done = list;
        break :types &done;
    };
    if (types.len != 2 or types[0] != std.mem.Allocator or types[1] == null) {
        @compileError(shape ++ ", not " ++ @typeName(F));
    }
    return types;
}

/// Defines the module's `alloc` and `execute` exports around `handler`, a function
/// `fn (std.mem.Allocator, []const u8) E![]const u8` (any error set E, or none).
/// Call it in a `comptime` block of the root source file.
pub fn handle(comptime handler: anytype) void {
    const shape = "wasmq.handle takes a handler fn (std.mem.Allocator, []const u8) E![]const u8";
    const types = params(@TypeOf(handler), shape);
    const Returned = @typeInfo(@TypeOf(handler)).@"fn".return_type.?;
    const Result = if (fallible(Returned)) @typeInfo(Returned).error_union.payload else Returned;
    if (types[1] != []const u8 or (Result != []const u8 and Result != []u8)) {
        @compileError(shape ++ ", not " ++ @typeName(@TypeOf(handler)));
    }
    const Exports = struct {
        fn execute(ptr: u32, len: u32) callconv(.c) u64 {
            const payload = @as([*]const u8, @ptrFromInt(ptr))[0..len];
            const allocator = task_arena.allocator();
            failure_len = null;
            if (comptime fallible(Returned)) {
                const result: []const u8 = handler(allocator, payload) catch |err| {
                    report(err);
                    return 0;
                };
                return pack(result);
            } else {
                const result: []const u8 = handler(allocator, payload);
                return pack(result);
            }
        }
    };
    @export(&allocPayload, .{ .name = "alloc" });
    @export(&Exports.execute, .{ .name = "execute" });
}

/// Parses the payload as JSON into `T` (unknown fields ignored); a payload that does not
/// parse is a terminal failure naming the problem and where it is.
pub fn parseJson(comptime T: type, allocator: std.mem.Allocator, payload: []const u8) Failed!T {
    var scanner = std.json.Scanner.initCompleteInput(allocator, payload);
    var diagnostics: std.json.Diagnostics = .{};
    scanner.enableDiagnostics(&diagnostics);
    const options: std.json.ParseOptions = .{ .ignore_unknown_fields = true };
    return std.json.parseFromTokenSourceLeaky(T, allocator, &scanner, options) catch |err| {
        if (err == error.OutOfMemory) {
            return fail(.retryable, "out of memory parsing the payload", .{});
        }
        const problem = "the payload is not the JSON this task takes: {s} at line {d}, column {d}";
        const where = .{ @errorName(err), diagnostics.getLine(), diagnostics.getColumn() };
        return fail(.terminal, problem, where);
    };
}

/// `value` as JSON text, in `allocator`'s memory.
pub fn toJson(allocator: std.mem.Allocator, value: anytype) Failed![]const u8 {
    return std.json.Stringify.valueAlloc(allocator, value, .{}) catch
        fail(.retryable, "out of memory writing the result as JSON", .{});
}

/// Like `handle`, for a handler `fn (std.mem.Allocator, In) E!Out`: the payload is parsed
/// as JSON into `In` (see `parseJson`), the returned `Out` written as JSON.
pub fn handleJson(comptime handler: anytype) void {
    const info = @typeInfo(@TypeOf(handler)).@"fn";
    const shape = "wasmq.handleJson takes a handler fn (std.mem.Allocator, In) E!Out";
    const In = params(@TypeOf(handler), shape)[1].?;
    const Wrapped = struct {
        fn call(allocator: std.mem.Allocator, payload: []const u8) anyerror![]const u8 {
            const input = try parseJson(In, allocator, payload);
            const output = if (comptime fallible(info.return_type.?))
                try handler(allocator, input)
            else
                handler(allocator, input);
            return toJson(allocator, output);
        }
    };
    handle(Wrapped.call);
}
