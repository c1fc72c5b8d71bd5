/*
 * fuzz_http_request.c - the API's own request parsing over arbitrary bytes:
 * query strings as the handlers see them (evhttp_parse_query_str, then the
 * time and address checks), RFC 3339 / unix-seconds times (http_parse_time),
 * webhook URLs (http_webhook_url_private) and the cleaning of text echoed in
 * error messages (http_utf8_clean must leave valid UTF-8 without controls).
 * HTTP framing itself is libevent's evhttp.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "http/http.h"
#include "http/http_int.h"
#include "fuzz.h"

static void check_clean(const char *s)
{
	char *c = strdup(s);
	FUZZ_ASSERT(c != NULL);
	http_utf8_clean(c);
	FUZZ_ASSERT(strlen(c) == strlen(s));
	for (const unsigned char *p = (const unsigned char *)c; *p; p++)
		FUZZ_ASSERT(*p >= 0x20 && *p != 0x7f);
	json_t *j = json_string(c); /* NULL if not valid UTF-8 */
	FUZZ_ASSERT(j != NULL);
	json_decref(j);
	free(c);
}

static void check_value(const char *v)
{
	int64_t ms = 0;
	if (http_parse_time(v, &ms))
		FUZZ_ASSERT(ms >= 0);
	(void)http_addr_valid(v);
	(void)http_webhook_url_private(v);
	check_clean(v);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	if (size > 4096)
		return 0;
	char *s = malloc(size + 1);
	FUZZ_ASSERT(s != NULL);
	memcpy(s, data, size);
	s[size] = '\0';
	check_value(s);
	struct evkeyvalq q;
	TAILQ_INIT(&q);
	if (evhttp_parse_query_str(s, &q) == 0)
		for (struct evkeyval *kv = q.tqh_first; kv; kv = kv->next.tqe_next)
			check_value(kv->value);
	evhttp_clear_headers(&q);
	free(s);
	return 0;
}
