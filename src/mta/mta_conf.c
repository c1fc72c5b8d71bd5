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
	m->params = (struct mta_conn_params){
		.helo = c->hostname,
		.tls_required = c->delivery.tls == CONF_TLS_REQUIRED,
		.tls_verify = c->delivery.tls_verify,
		/* RFC 5321 4.5.3.2 */
		.timeout_connect = 30,
		.timeout_greeting = 300,
		.timeout_cmd = 300,
		.timeout_data = 180,
		.timeout_final = 600,
	};
}
