"""What follows a decision, on the record: review cases, authorisations, pre-approval.

`cases` records a decision with what it opens (a review case for needs_review, an authorisation
for an outcome the rulebook says grants one) and resolves cases; `authorisations` grants and looks
them up; `preapproval` checks a pharmacy order against them, the label and the dose;
`order_fields` reads CSV columns and form fields as requests; `active_rulebook` is the rulebook
version a process serves, and reloading it. This layer joins deciding and storing; the web layer
and the CLI call it, and it knows nothing of HTTP.
"""
