-- Deleting a user must end the provider sessions they logged in like any other end of a session:
-- the sweep (oidc/session-end.ts) deletes their grants and tokens and sends the back-channel logouts.
-- With the cascade from users, the links went with the user row before any sweep could see them, and
-- applications signed in through the provider were never told. A link whose user is gone counts as
-- ended (repositories/oidc/links.ts) and is removed by the sweep that ends it.
ALTER TABLE oidc_session_links DROP CONSTRAINT oidc_session_links_user_id_fkey;
