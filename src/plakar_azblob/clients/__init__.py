"""What every connector stands on to reach Azure: the shared client factory.

:mod:`.config` parses and checks plakar's options; :mod:`.credentials` turns
them into a credential (shared key, SAS, Microsoft Entra ID); :mod:`.retry`
holds the timeouts and the one retry policy of every request; :mod:`.factory`
builds the Azure SDK's clients; :mod:`.errors` turns Azure's exceptions into
one-line errors without secrets.
"""
