/*
 * mta_sandbox.c - delivery.mode: sandbox. The whole pipeline runs, but each
 * outgoing message is written to data_dir/sandbox/<ID>-<destination>.eml
 * instead of being sent: a first message on a machine without internet access
 * visibly "arrives", and integrators can test without mailing anyone.
 *
 * Each file starts with X-Relevo-Envelope-From / -To lines, then the message
 * exactly as it would have been sent. Written to a temporary name, fsynced and
 * renamed, so a file that exists is complete.
 */
#include "mta/mta_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* sandbox_write - one message's file; RC_OK or RC_IO. */
static enum rc sandbox_write(struct mta *m, const char *dest, struct mta_msgwork *w,
			     char *path, size_t pathsz)
{
	char dir[4096], tmp[4600], ids[ID_STR_LEN + 1];
	id_format(w->env->id, ids);
	snprintf(dir, sizeof dir, "%.4000s/sandbox", m->conf->data_dir);
	if (file_mkdir_p(dir, 0700) != RC_OK)
		return RC_IO;
	snprintf(path, pathsz, "%s/%s-%.260s.eml", dir, ids, dest);
	snprintf(tmp, sizeof tmp, "%.4500s.tmp", path);
	struct evbuffer *out = evbuffer_new();
	evbuffer_add_printf(out, "X-Relevo-Envelope-From: <%s>\r\n", w->env->sender);
	for (size_t k = 0; k < w->nrcpt; k++)
		evbuffer_add_printf(out, "X-Relevo-Envelope-To: <%s>\r\n", w->rcpt[k].addr);
	enum rc rc = spool_read_body(m->spool, w->env->id, out);
	int fd = rc == RC_OK ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
	if (fd >= 0) {
		size_t len = evbuffer_get_length(out);
		rc = file_write_all(fd, evbuffer_pullup(out, -1), len);
		if (rc == RC_OK && fsync(fd) != 0)
			rc = RC_IO;
		close(fd);
		if (rc == RC_OK && rename(tmp, path) != 0)
			rc = RC_IO;
		if (rc == RC_OK)
			rc = file_fsync_dir(dir);
	} else {
		rc = RC_IO;
	}
	if (rc != RC_OK)
		unlink(tmp);
	evbuffer_free(out);
	return rc;
}

/* mta_sandbox_deliver - "deliver" messages of the attempt into files. */
void mta_sandbox_deliver(struct mta *m, struct mta_attempt *a, bool flagged_only)
{
	size_t keep = 0;
	for (size_t i = 0; i < a->nmsgs; i++) {
		struct mta_msgwork *w = &a->msgs[i];
		if (flagged_only && !(w->env->flags & SPOOL_F_SANDBOX)) {
			a->msgs[keep++] = *w;
			continue;
		}
		char path[4500];
		enum rc rc = sandbox_write(m, a->dest, w, path, sizeof path);
		struct mta_reply r = {.code = rc == RC_OK ? 250 : 451};
		str_lcpy(r.enh, rc == RC_OK ? "2.0.0" : "4.3.0", sizeof r.enh);
		snprintf(r.text, sizeof r.text, "%s %.1900s",
			 rc == RC_OK ? "sandbox: written to" : "sandbox: could not write", path);
		struct outcome o;
		mta_outcome_of(&o, OUTCOME_BY_REPLY, rc == RC_OK ? RC_OK : RC_TEMPFAIL, &r, NULL,
			       NULL, "sandbox");
		for (size_t k = 0; k < w->nrcpt; k++)
			mta_record(m, w->env, w->rcpt[k].idx, &o, a->dest, a->stream);
		spool_env_free(w->env);
		if (w->body)
			evbuffer_free(w->body);
		free(w->rcpt);
	}
	a->nmsgs = keep;
	a->next_msg = 0;
}
