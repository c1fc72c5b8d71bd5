/*
 * mta_conf.c - the delivery settings of the config, turned into the engine's
 * scheduler and connection parameters (one place, so that a renamed or added key
 * touches one function).
 */
#include "mta/mta_int.h"

/* mta_conf_apply - fill the engine's settings from m->conf. */
void mta_conf_apply(struct mta *m)
{
	const struct conf *c = m->conf;
	m->sc = (struct sched_conf){
		.retry_schedule = c->delivery.retry_schedule,
		.nretry = c->delivery.nretry_schedule,
		.max_queue_lifetime = c->delivery.max_queue_lifetime,
		.max_conn_per_dest = c->delivery.max_connections_per_destination,
	};
	m->sandbox = c->delivery.mode == CONF_DELIVERY_SANDBOX;
	m->dns_timeout_ms = c->dns.timeout * 1000;
	m->max_conns = c->delivery.max_connections;
	m->max_msgs_per_conn = c->delivery.max_messages_per_connection;
	m->idle_timeout = c->delivery.idle_timeout;
	mta_conf_conn_params(c, m->tls, &m->params);
}

/* mta_conf_conn_params - the connection defaults of c (helo points into c). */
void mta_conf_conn_params(const struct conf *c, SSL_CTX *tls, struct mta_conn_params *p)
{
	*p = (struct mta_conn_params){
		.helo = c->hostname,
		.tls = tls,
		.tls_required = c->delivery.tls == CONF_TLS_REQUIRED,
		.tls_verify = c->delivery.tls_verify,
		.timeout_connect = c->delivery.timeouts.connect,
		.timeout_greeting = c->delivery.timeouts.greeting,
		.timeout_ehlo = c->delivery.timeouts.ehlo,
		.timeout_mail = c->delivery.timeouts.mail,
		.timeout_rcpt = c->delivery.timeouts.rcpt,
		.timeout_data = c->delivery.timeouts.data,
		.timeout_data_block = c->delivery.timeouts.data_block,
		.timeout_final = c->delivery.timeouts.data_done,
	};
}
