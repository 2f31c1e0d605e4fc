"""The web layer, the only one that speaks HTTP: the JSON API, its OpenAPI document, the console.

`app` builds the Flask application; `context` gives a view the instance, the served rulebook,
the principal and the JSON body; `middleware` stamps request ids, logs and records refusals;
`errors` maps every failure to the one JSON error or a console page; `roles` is the one table of
who may do what. `api/` and `console/` hold the views; both call the workflow layer, so a
decision made in the console is the same decision the API makes.
"""
