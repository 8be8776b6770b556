/*
 * strata_pg_guard: a PostgreSQL server module that every Strata cluster
 * loads (shared_preload_libraries, set by Strata in strata.conf).
 *
 * The master user of an instance is not a superuser but, as on RDS, may
 * CREATE ROLE (CREATEROLE). In PostgreSQL 15, CREATEROLE may grant membership
 * in any role that is not a superuser, including the predefined roles that
 * open the server's host: pg_execute_server_program (COPY ... PROGRAM),
 * pg_read_server_files and pg_write_server_files (COPY to and from server
 * files, pg_read_file's cousins). PostgreSQL 16 closed this; on 15 this
 * module refuses, to anyone but a superuser (Strata's own role), every
 * statement that would add a member to those roles:
 *   GRANT <role> TO ...;  CREATE ROLE ... IN ROLE <role>;
 *   ALTER GROUP <role> ADD USER ...
 * Everything else passes to PostgreSQL unchanged.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"

PG_MODULE_MAGIC;

void _PG_init(void);

static ProcessUtility_hook_type previous_hook = NULL;

static const char *const kHostRoles[] = {"pg_execute_server_program", "pg_read_server_files",
                                         "pg_write_server_files", NULL};

static void
refuse_host_role(const char *name)
{
	int			i;

	if (name == NULL)
		return;
	for (i = 0; kHostRoles[i] != NULL; i++)
	{
		if (strcmp(name, kHostRoles[i]) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to grant role \"%s\"", name),
					 errdetail("Access to the server's programs and files is reserved to Strata, as on Amazon RDS.")));
	}
}

static void
refuse_role_list(List *roles)
{
	ListCell   *lc;

	foreach(lc, roles)
	{
		Node	   *node = (Node *) lfirst(lc);

		if (IsA(node, AccessPriv))
			refuse_host_role(((AccessPriv *) node)->priv_name);
		else if (IsA(node, RoleSpec) && ((RoleSpec *) node)->roletype == ROLESPEC_CSTRING)
			refuse_host_role(((RoleSpec *) node)->rolename);
	}
}

static void
check_statement(Node *stmt)
{
	ListCell   *lc;

	if (superuser())
		return;
	if (IsA(stmt, GrantRoleStmt))
	{
		GrantRoleStmt *grant = (GrantRoleStmt *) stmt;

		if (grant->is_grant)
			refuse_role_list(grant->granted_roles);
	}
	else if (IsA(stmt, CreateRoleStmt))
	{
		foreach(lc, ((CreateRoleStmt *) stmt)->options)
		{
			DefElem    *opt = (DefElem *) lfirst(lc);

			if (strcmp(opt->defname, "addroleto") == 0)
				refuse_role_list((List *) opt->arg);
		}
	}
	else if (IsA(stmt, AlterRoleStmt))
	{
		AlterRoleStmt *alter = (AlterRoleStmt *) stmt;

		if (alter->action > 0 && alter->role != NULL && alter->role->roletype == ROLESPEC_CSTRING)
		{
			foreach(lc, alter->options)
			{
				if (strcmp(((DefElem *) lfirst(lc))->defname, "rolemembers") == 0)
					refuse_host_role(alter->role->rolename);
			}
		}
	}
}

static void
strata_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					   ProcessUtilityContext context, ParamListInfo params, QueryEnvironment *queryEnv,
					   DestReceiver *dest, QueryCompletion *qc)
{
	check_statement(pstmt->utilityStmt);
	if (previous_hook)
		previous_hook(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

void
_PG_init(void)
{
	previous_hook = ProcessUtility_hook;
	ProcessUtility_hook = strata_process_utility;
}
