/*
 * File-system helpers (see fsutil.h).
 */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* The temporary file of <path>, written; <owned>: fchmod and fchown it first. */
static int write_tmp(const char *path, const void *data, size_t len, mode_t mode, bool owned,
                     uid_t uid, gid_t gid, char *tmp, size_t tmp_size, char **err)
{
    const char *p = data;
    int fd, e;

    if (snprintf(tmp, tmp_size, "%s.tmp", path) >= (int)tmp_size)
        return err_set(err, "%s: path too long", path);
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return err_set(err, "cannot create %s: %s", tmp, strerror(errno));
    if (owned && (fchmod(fd, mode) < 0 || (uid != (uid_t)-1 && fchown(fd, uid, gid) < 0)))
        goto fail;
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
    if (close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    if (rename(tmp, path) < 0) {
        e = errno;
        unlink(tmp);
        return err_set(err, "cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
    return 0;
fail:
    e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return err_set(err, "cannot write %s: %s", tmp, strerror(e));
}

int fsutil_write_atomic(const char *path, const void *data, size_t len, mode_t mode, char **err)
{
    char tmp[4096];

    return write_tmp(path, data, len, mode, false, (uid_t)-1, (gid_t)-1, tmp, sizeof(tmp), err);
}

int fsutil_write_atomic_owned(const char *path, const void *data, size_t len, mode_t mode,
                              uid_t uid, gid_t gid, char **err)
{
    char tmp[4096];

    if (write_tmp(path, data, len, mode, true, uid, gid, tmp, sizeof(tmp), err) < 0)
        return -1;
    return fsutil_fsync_dir(path, err);
}
