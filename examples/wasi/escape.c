// Tries to read files outside the directory preopened as /data, through libc and
// through the raw WASI call, and prints what each attempt got. The first line is a
// control: a file inside the preopen must be readable.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <wasi/api.h>

static void try_open(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        printf("open %s: errno %d\n", path, errno);
        return;
    }
    char buf[64] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    printf("open %s: read %zd bytes: %s\n", path, n, buf);
    close(fd);
}

// path_open relative to the preopened directory's descriptor (3), with no libc in
// between: the host alone decides.
static void try_path_open(const char *path) {
    __wasi_fd_t fd;
    __wasi_errno_t e = __wasi_path_open(3, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, path, 0,
                                        __WASI_RIGHTS_FD_READ, 0, 0, &fd);
    if (e != 0) {
        printf("path_open %s: errno %d\n", path, e);
        return;
    }
    printf("path_open %s: opened\n", path);
    (void)__wasi_fd_close(fd);
}

int main(void) {
    try_open("/data/inside.txt");
    try_open("/data/../outside.txt");
    try_open("/data/link");
    try_open("/etc/passwd");
    try_path_open("inside.txt");
    try_path_open("../outside.txt");
    try_path_open("sub/../../outside.txt");
    try_path_open("link");
    try_path_open("/etc/passwd");
    return 0;
}
