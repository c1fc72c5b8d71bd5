/*
 * http_event.c - one event as a JSON object: the format of GET /v1/events and of
 * every webhook POST.
 *
 * {"id": 42, "type": "bounced", "time": "2026-11-26T13:05:39.123Z",
 *  "timestamp": 1795698339123, "message_id": "0000019a5c3e0001",
 *  "recipient": "...", "sender": "...", "user": "...", "stream": "bulk",
 *  "source": "api", "status": "5.1.1", "classification": "hard",
 *  "remote": "mx.example.org[192.0.2.1]", "reply": "550 5.1.1 ...", "attempts": 1}
 * Absent values are omitted; timestamp is unix milliseconds (kept for clients of
 * 0.2; time says the same as RFC 3339).
 *
 * Also one recipient's last reply as the object GET /v1/messages/{id} shows, both
 * from an event's fields and from the outcome the spool keeps (read back with
 * outcome_parse, core_outcome.c): the API never shows the stored text itself.
 */
#include "http/http_int.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static void set_str(json_t *o, const char *k, const char *v)
{
	if (v != NULL)
		json_object_set_new(o, k, json_string(v));
}

char *http_event_json(const struct evlog_event *ev)
{
	json_t *o = json_object();
	char id[ID_STR_LEN + 1];
	if (ev->seq)
		json_object_set_new(o, "id", json_integer(ev->seq));
	json_object_set_new(o, "type", json_string(evlog_type_name(ev->type)));
	json_object_set_new(o, "time", http_time_json(ev->time));
	json_object_set_new(o, "timestamp", json_integer(ev->time));
	if (ev->msgid) {
		id_format(ev->msgid, id);
		json_object_set_new(o, "message_id", json_string(id));
	}
	set_str(o, "recipient", ev->recipient);
	set_str(o, "sender", ev->sender);
	set_str(o, "user", ev->user);
	set_str(o, "stream", ev->stream);
	set_str(o, "source", ev->source);
	set_str(o, "status", ev->status);
	set_str(o, "classification", ev->bounce_class);
	set_str(o, "remote", ev->remote);
	set_str(o, "reply", ev->reply);
	if (ev->attempts)
		json_object_set_new(o, "attempts", json_integer(ev->attempts));
	char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(o);
	if (s == NULL)
		fatal("event=json_dumps_failed");
	return s;
}

/* reply_code - the SMTP code a reply text starts with ("421 4.2.0 ..."), or 0. */
static int reply_code(const char *reply)
{
	if (reply == NULL || reply[0] < '2' || reply[0] > '5' || reply[1] < '0' || reply[1] > '9' ||
	    reply[2] < '0' || reply[2] > '9' || (reply[3] != '\0' && reply[3] != ' '))
		return 0;
	return (reply[0] - '0') * 100 + (reply[1] - '0') * 10 + (reply[2] - '0');
}

static json_t *str_or_null(const char *s, size_t n)
{
	return s != NULL && n > 0 ? json_stringn(s, n) : json_null();
}

/* http_last_reply - {"status", "remote", "reply", "code"}; absent (NULL or empty)
 * members are null; JSON null when there is nothing at all. */
struct json_t *http_last_reply(const char *status, const char *remote, const char *reply)
{
	size_t ns = status ? strlen(status) : 0, nr = remote ? strlen(remote) : 0;
	size_t np = reply ? strlen(reply) : 0;
	if (ns + nr + np == 0)
		return json_null();
	int code = reply_code(reply);
	json_t *o = json_object();
	json_object_set_new(o, "status", str_or_null(status, ns));
	json_object_set_new(o, "remote", str_or_null(remote, nr));
	json_object_set_new(o, "reply", str_or_null(reply, np));
	json_object_set_new(o, "code", code ? json_integer(code) : json_null());
	return o;
}

/* http_last_reply_stored - the object of an outcome as the spool stores it
 * (outcome_parse); text of any other form is the reply itself. */
struct json_t *http_last_reply_stored(const char *stored)
{
	if (stored == NULL)
		return json_null();
	struct outcome *o = xmalloc(sizeof *o);
	char remote[OUTCOME_HOST_MAX + OUTCOME_ADDR_MAX + 2];
	json_t *j;
	if (outcome_parse(stored, o)) {
		outcome_remote(o, remote, sizeof remote);
		j = http_last_reply(o->status, remote, o->reply);
	} else {
		j = http_last_reply(NULL, NULL, stored);
	}
	free(o);
	return j;
}
