/*
 * core_net.c - the two socket chores the daemon's modules share: binding a
 * listening socket (SMTP and HTTP listeners, at start and on a reload, so that
 * a failure names the address and errno the same way everywhere), and the
 * sd_notify(3) datagram to systemd, written here instead of linking libsystemd.
 *
 * sdnotify_send is called from the main loop only (start, reload, stop); it
 * opens a socket per message, which is cheap at that rate.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/core.h"

/* net_listen_socket - bound and listening, or -1 with errno. */
int net_listen_socket(const struct sockaddr *sa, socklen_t salen)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int on = 1;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	if (sa->sa_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
	if (bind(fd, sa, salen) != 0 || listen(fd, 1024) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* sdnotify_send - one datagram to $NOTIFY_SOCKET ("@name": abstract namespace). */
void sdnotify_send(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (path == NULL || path[0] == '\0')
		return;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	size_t len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof sun.sun_path) {
		log_warn("event=sdnotify_failed error=\"unusable NOTIFY_SOCKET\"");
		return;
	}
	memcpy(sun.sun_path, path, len);
	if (path[0] == '@')
		sun.sun_path[0] = '\0';
	socklen_t salen =
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '@' ? 0 : 1));
	int first = (int)strcspn(state, "\n"); /* logged: the first assignment */
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 ||
	    sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sun, salen) < 0)
		log_warn("event=sdnotify_failed state=%.*s error=\"%s\"", first, state,
		         strerror(errno));
	else
		log_debug("event=sdnotify state=%.*s", first, state);
	if (fd >= 0)
		close(fd);
}
