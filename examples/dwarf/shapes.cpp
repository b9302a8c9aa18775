// A small C++ program compiled to wasm32 with DWARF (see build.sh). framewalk's tests
// and README use it to show source lines and demangled names in trap backtraces.
// Freestanding: no libc, no exceptions. Exports `run`, `fail` and `show`; imports
// `framewalk.backtrace` (framewalk's host module: prints the wasm backtrace).

namespace shapes {

struct Grid {
    int cells[16];
    int width;
};

// Inlined into `checked_div`, itself inlined into `average`: the trap's source line
// is here, and the backtrace shows both as inlined frames of `average`.
static inline __attribute__((always_inline)) int divide(int total, int count) {
    return total / count;
}

static inline __attribute__((always_inline)) int checked_div(int total, int count) {
    return divide(total, count);
}

__attribute__((noinline)) int average(const Grid& grid, int count) {
    int total = 0;
    for (int i = 0; i < count; i++) {
        total += grid.cells[i];
    }
    return checked_div(total, count);
}

__attribute__((noinline)) int row_average(Grid& grid, int row) {
    int count = grid.width - row;
    return average(grid, count);
}

// The host prints the wasm frames below it.
extern "C" __attribute__((import_module("framewalk"), import_name("backtrace"))) void backtrace();

__attribute__((noinline)) void report() {
    backtrace();
}

} // namespace shapes

__attribute__((noinline)) static void fail_loudly() {
    __builtin_trap();
}

extern "C" {

// `run(width, row)`: the average of the first `width - row` cells of a grid filled
// with 0..15; traps (integer divide by zero) when `row == width`.
__attribute__((export_name("run"))) int run(int width, int row) {
    shapes::Grid grid;
    for (int i = 0; i < 16; i++) {
        grid.cells[i] = i;
    }
    grid.width = width;
    return shapes::row_average(grid, row);
}

// `fail()`: reaches `unreachable` in a non-inlined helper.
__attribute__((export_name("fail"))) void fail() {
    fail_loudly();
}

// `show()`: asks the host to print the wasm backtrace.
__attribute__((export_name("show"))) void show() {
    shapes::report();
}

}
