/*
 * http_event.c - one event as a JSON object: the format of GET /v1/events and of
 * every webhook POST.
 *
 * {"id": 42, "type": "bounced", "time": "2026-11-26T13:05:39.123Z",
 *  "timestamp": 1795698339123, "message_id": "0000019a5c3e0001",
 *  "recipient": "...", "sender": "...", "user": "...", "stream": "bulk",
 *  "source": "api", "status": "5.1.1", "classification": "hard",
 *  "remote": "mx.example.org[192.0.2.1]", "reply": "550 5.1.1 ...", "attempts": 1}
 * Absent values are omitted; timestamp is unix milliseconds.
 */
#include "http/http_int.h"

#include <stdlib.h>

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
