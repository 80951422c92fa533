/*
 * File-system helpers (see fsutil.h).
 */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errmsg.h"

int fsutil_fsync_dir(const char *path, char **err)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    int fd, rc = 0;

    if (slash == NULL)
        dir = strdup(".");
    else
        dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
    if (dir == NULL)
        return err_set(err, "out of memory");
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        rc = err_set(err, "cannot fsync directory %s: %s", dir, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(dir);
    return rc;
}

int fsutil_write_atomic(const char *path, const void *data, size_t len, mode_t mode, char **err)
{
    const char *p = data;
    char tmp[4096];
    int fd, e;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return err_set(err, "%s: path too long", path);
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return err_set(err, "cannot create %s: %s", tmp, strerror(errno));
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto fail;
        p += n;
        len -= (size_t)n;
    }
    if (fsync(fd) < 0)
        goto fail;
    close(fd);
    if (rename(tmp, path) < 0) {
        e = errno;
        unlink(tmp);
        return err_set(err, "cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
    return 0;
fail:
    e = errno;
    close(fd);
    unlink(tmp);
    return err_set(err, "cannot write %s: %s", tmp, strerror(e));
}
