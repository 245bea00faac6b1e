"""Every case of coupa-domain.md and every promise of the README, with the tests that check it.

CASES maps a case (``"<document>: <section>: <what must hold>"``) to the tests that assert
it, as ``"<module>.py::<function>"`` (a parametrized test by its function name). The tests
below fail when an entry names a module or a function that does not exist, so the index
cannot rot when tests are renamed or removed, and when a case is left without any test.

coupa-domain.md lives outside the repository and is not read here: its cases are copied by
hand, section by section. PENDING lists what the documents ask for and coupad does not do
yet, with the reason; UNTESTED lists promises that are implemented but that no test checks
(each with the reason). Neither may also appear in CASES.

Simulator tests (test_sim_*.py) check the Coupa look-alike, not coupad, so they are not
counted here as coverage of what a client must do.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

CASES: dict[str, list[str]] = {
    # ---- coupa-domain.md: the opening section (users and their lists) ---------------------
    "coupa-domain: Users: the tenant's base URL is always configuration, never a default": [
        "test_config.py::test_defaults_without_any_file",
        "test_check_login.py::test_run_without_a_tenant_refuses_to_start",
        "test_check_login.py::test_check_without_a_tenant_says_what_is_missing",
    ],
    "coupa-domain: Users: lists of hundreds to tens of thousands of PO numbers": [
        "test_intake.py::test_a_hundred_thousand_row_csv_parses_every_row",
        "test_journal.py::test_claim_round_robin_small_batch_is_not_stuck_behind_a_huge_one",
    ],
    "coupa-domain: Users: a run that dies mid-way does not start over": [
        "test_daemon_browser.py::test_kill_9_at_any_point_resumes_without_loss_or_double_download",
        "test_daemon_policy.py::test_kill_9_of_the_daemon_leaves_no_worker_and_the_restart_resumes",
        "test_journal.py::test_kill_9_mid_workload_loses_nothing_and_does_nothing_twice",
    ],
    "coupa-domain: Users: a PO reported done really has every file on disk": [
        "test_daemon_browser.py::test_files_dropped_together_and_slowly_all_become_verified_folders",
        "test_engine.py::test_completed_with_both_shapes_under_the_toolbar",
    ],
    # ---- coupa-domain.md: Pages and URLs ---------------------------------------------------
    "coupa-domain: Pages and URLs: the PO page is <base>/order_headers/<digits>": [
        "test_engine.py::test_completed_with_both_shapes_under_the_toolbar",
        "test_engine.py::test_one_tab_serves_po_after_po_each_reading_its_own_page",
    ],
    "coupa-domain: Pages and URLs: PO numbers are written with or without a PO/PM prefix": [
        "test_ponumber.py::test_spellings_of_one_po_are_the_same",
        "test_ponumber.py::test_pm_prefix_is_stripped",
        "test_intake.py::test_po_cells_read_exactly_as_ponumber_normalize_reads_them",
    ],
    "coupa-domain: Pages and URLs: what remains after the prefix must be 6+ digits": [
        "test_ponumber.py::test_hostile_cells_are_refused_with_a_reason",
        "test_fetch_cli.py::test_invalid_po_numbers_are_a_usage_error",
    ],
    "coupa-domain: Pages and URLs: two spellings of the same number are the same PO": [
        "test_intake.py::test_a_plain_file_reads_into_rows_with_numbers_a_person_sees",
        "test_intake.py::test_hostile_file_is_accepted_with_exactly_its_row_errors",
        "test_fetch_cli.py::test_fetch_prints_one_line_per_po_and_exits_0_when_all_are_final",
    ],
    "coupa-domain: Pages and URLs: the requisition is found by following the PO page's link": [
        "test_page.py::test_snapshot_waits_for_rendered_attachments_and_reads_the_page",
        "test_engine.py::test_requisition_files_by_mode",
    ],
    "coupa-domain: Pages and URLs: native sign-in form at /sessions/new (#user_email, "
    "#user_password)": [
        "test_engine_signin.py::test_wrong_password_is_a_distinct_error",
        "test_fetch_cli.py::test_session_expiry_mid_run_signs_in_again",
        "test_check_login.py::test_check_passes_against_a_tenant_with_working_form_sign_in",
    ],
    "coupa-domain: Pages and URLs: SSO sends the browser to an identity provider on another "
    "host and back": [
        "test_engine_signin.py::test_profile_mode_waits_for_sign_in_then_downloads",
        "test_engine_signin.py::test_form_sign_in_on_an_sso_tenant_says_to_use_the_profile",
        "test_page.py::test_sign_in_page_or_identity_provider_is_signed_out",
    ],
    "coupa-domain: Pages and URLs: the session lives in the profile's cookies and expires": [
        "test_engine.py::test_signed_out_after_expiry_writes_no_final_folder",
        "test_pool_browser.py::test_profile_sign_in_waits_for_a_new_sign_in_then_completes",
    ],
    "coupa-domain: Pages and URLs: after sign-in the landing URL contains dashboard or home": [
        # Form sign-in succeeds only on a landing URL (the simulator lands on /user/home) and
        # is refused when the browser stays on the form; "dashboard" itself is never served.
        "test_check_login.py::test_check_passes_against_a_tenant_with_working_form_sign_in",
        "test_engine_signin.py::test_wrong_password_is_a_distinct_error",
    ],
    # ---- coupa-domain.md: What a PO page looks like ----------------------------------------
    "coupa-domain: PO page: attachments rendered seconds after the page, by its script or "
    "late, are not missed": [
        "test_engine_evidence.py::test_list_rendered_by_a_timer_2_5_s_after_load_is_not_read_as_empty",
        "test_engine_evidence.py::test_list_fetched_by_the_pages_own_request_answered_after_2_s",
        "test_engine_evidence.py::test_list_from_a_script_inserted_after_load_or_from_a_worker",
        "test_page.py::test_snapshot_waits_for_rendered_attachments_and_reads_the_page",
    ],
    "coupa-domain: PO page: a list that grows in steps is read whole": [
        "test_engine_evidence.py::test_list_growing_from_one_file_to_two_1_5_s_apart_is_read_whole",
        "test_engine_evidence.py::test_list_growing_in_three_steps_by_timer_and_by_request",
    ],
    "coupa-domain: PO page: an empty or short list seen early is not evidence": [
        "test_engine_evidence.py::test_list_rendered_by_a_timer_2_5_s_after_load_is_not_read_as_empty",
        "test_engine_evidence.py::test_page_that_never_stops_working_is_read_once_its_list_is_unchanged",
        "test_page.py::test_what_keeps_a_page_from_being_idle",
        "test_page.py::test_hook_installed_late_when_missing",
    ],
    "coupa-domain: PO page: attachments shown as aria-label '<name> file attachment' "
    "(span[role=button], name in title)": [
        "test_page.py::test_snapshot_waits_for_rendered_attachments_and_reads_the_page",
        "test_engine.py::test_completed_with_both_shapes_under_the_toolbar",
        "test_engine_hostile.py::test_evil_names_become_safe_names_inside_the_folder",
    ],
    "coupa-domain: PO page: attachments shown as links with attachment_file or /attachments/ "
    "in href": [
        "test_page.py::test_snapshot_waits_for_rendered_attachments_and_reads_the_page",
        "test_engine.py::test_completed_with_both_shapes_under_the_toolbar",
    ],
    "coupa-domain: PO page: generic download, export and print links are not attachments": [
        "test_page.py::test_snapshot_waits_for_rendered_attachments_and_reads_the_page",
        "test_engine.py::test_completed_with_both_shapes_under_the_toolbar",
    ],
    "coupa-domain: PO page: a floating toolbar intercepts clicks on elements beneath it": [
        "test_engine.py::test_completed_with_both_shapes_under_the_toolbar",
        "test_engine_signin.py::test_a_click_after_expiry_saves_no_sign_in_page_as_the_file",
    ],
    "coupa-domain: PO page: the supplier is found by its label, not by position": [
        "test_page.py::test_supplier_found_by_its_label",
        "test_engine.py::test_grouped_by_supplier",
        "test_engine.py::test_one_tab_serves_po_after_po_each_reading_its_own_page",
    ],
    "coupa-domain: PO page: a PO may have zero attachments": [
        "test_engine.py::test_no_attachments_finishes_with_an_empty_folder",
        "test_page.py::test_po_page_without_anything_but_long_text_is_content",
    ],
    "coupa-domain: PO page: the requisition's quote and approval documents are fetched too": [
        "test_engine.py::test_requisition_files_by_mode",
    ],
    "coupa-domain: PO page: error pages come with HTTP 200: not found vs access denied": [
        "test_page.py::test_error_pages_served_with_200",
        "test_engine.py::test_error_pages_are_final_and_visited_once",
        "test_page.py::test_hook_installed_late_when_missing",
    ],
    "coupa-domain: PO page: localized error page variants": [
        "test_page.py::test_error_pages_served_with_200",
        "test_engine.py::test_error_pages_are_final_and_visited_once",
    ],
    "coupa-domain: PO page: an informational banner on a valid PO is not an error": [
        "test_page.py::test_banner_saying_not_found_on_a_valid_po_is_not_an_error",
        "test_page.py::test_long_page_mentioning_not_found_in_body_is_content",
        "test_engine.py::test_completed_with_both_shapes_under_the_toolbar",
    ],
    "coupa-domain: PO page: under load Coupa answers slowly": [
        "test_engine.py::test_page_loads_overlap_across_tabs",
        "test_engine.py::test_a_hanging_page_ends_at_the_deadline",
        "test_pool_browser.py::test_a_page_that_never_answers_times_out_and_is_retried",
        "test_download.py::test_slow_body_past_the_deadline_is_a_retryable_timeout",
    ],
    "coupa-domain: PO page: under load Coupa answers with 5xx errors": [
        "test_page.py::test_http_5xx_is_server_error",
        "test_engine.py::test_transient_trouble_then_success_on_retry",
        "test_download.py::test_statuses",
    ],
    "coupa-domain: PO page: under load Coupa answers with HTTP 429 or a throttling page": [
        "test_page.py::test_http_429_is_throttled_even_before_settling",
        "test_page.py::test_throttling_page_served_with_200",
        "test_engine.py::test_transient_trouble_then_success_on_retry",
        "test_pool_browser.py::test_a_429_storm_slows_the_whole_pool_then_the_batch_completes",
    ],
    # ---- coupa-domain.md: Downloads --------------------------------------------------------
    "coupa-domain: Downloads: the name comes from Content-Disposition filename=": [
        "test_names.py::test_content_disposition",
        "test_download.py::test_normal_file_streams_with_its_sha256",
    ],
    "coupa-domain: Downloads: the RFC 5987 filename*= form, also as the only name": [
        "test_names.py::test_content_disposition",
        "test_download.py::test_rfc5987_name",
        "test_engine_evidence.py::test_storage_redirects_are_followed_for_links_and_clicks_without_the_coupa_cookie",
        "test_engine_hostile.py::test_evil_names_become_safe_names_inside_the_folder",
    ],
    "coupa-domain: Downloads: names with spaces, accents, commas, quotes and characters "
    "illegal on Windows": [
        "test_names.py::test_awkward_names_become_one_harmless_component",
        "test_names.py::test_accents_in_either_normal_form_give_the_same_nfc_name",
        "test_engine.py::test_every_awkward_name_of_the_catalogue",
        "test_engine_hostile.py::test_evil_names_become_safe_names_inside_the_folder",
    ],
    "coupa-domain: Downloads: two attachments of one PO can share a name": [
        "test_engine.py::test_duplicate_names_are_kept_apart",
        "test_folders.py::test_duplicate_names_become_numbered_ignoring_case",
        "test_names.py::test_unique_name_numbers_duplicates",
    ],
    "coupa-domain: Downloads: sizes from a few KB to tens of MB": [
        "test_download.py::test_a_file_of_tens_of_mb_arrives_whole_with_its_sha256",
    ],
    "coupa-domain: Downloads: bodies without Content-Length end when the connection closes": [
        "test_download.py::test_a_body_without_content_length_is_read_to_its_end",
        "test_download.py::test_chunked_body_without_length",
        "test_download.py::test_a_close_delimited_body_ended_by_a_reset_is_retryable_and_leaves_nothing",
        "test_engine_evidence.py::test_storage_redirects_are_followed_for_links_and_clicks_without_the_coupa_cookie",
    ],
    "coupa-domain: Downloads: a redirect to file storage on another origin is followed, with "
    "no Coupa cookie or credential": [
        "test_download_redirects.py::test_a_signed_store_redirect_is_followed_not_refused_as_another_site",
        "test_download_redirects.py::test_no_credentials_from_netrc_reach_either_site",
        "test_engine_evidence.py::test_storage_redirects_are_followed_for_links_and_clicks_without_the_coupa_cookie",
        "test_engine_hostile.py::test_hostile_downloads_stay_in_the_po_folder_and_say_why",
    ],
    "coupa-domain: Downloads: a redirect to a sign-in page or identity provider means the "
    "session expired": [
        "test_download.py::test_redirect_to_sign_in_means_sign_in_required",
        "test_download_redirects.py::test_a_redirect_to_an_identity_provider_means_sign_in",
        "test_engine_hostile.py::test_attachment_redirecting_to_sign_in_means_signed_out",
        "test_engine_signin.py::test_a_click_after_expiry_saves_no_sign_in_page_as_the_file",
    ],
    "coupa-domain: Downloads: a .crdownload is not a download; only a complete file of the "
    "expected size counts": [
        "test_clicks.py::test_a_broken_download_is_reported_failed_with_what_is_known",
        "test_download.py::test_body_shorter_than_declared_is_retryable_and_leaves_nothing",
        "test_download.py::test_body_longer_than_declared_is_retryable_and_leaves_nothing",
        "test_engine_hostile.py::test_hostile_downloads_stay_in_the_po_folder_and_say_why",
    ],
    "coupa-domain: Downloads: concurrent downloads of different POs land in the right folder": [
        "test_engine.py::test_three_tabs_with_slow_downloads_keep_every_file_in_its_own_folder",
        "test_engine_clicks.py::test_three_tabs_click_three_slow_files_each_at_once_and_each_file_lands_in_its_po",
        "test_engine_clicks.py::test_downloads_started_in_a_hidden_iframe_and_in_a_new_window_belong_to_their_po",
        "test_clicks.py::test_downloads_from_iframes_and_a_popup_belong_to_their_tab",
    ],
    # ---- coupa-domain.md: What earlier tools got wrong -------------------------------------
    "coupa-domain: Earlier tools 1: an expired session is noticed on every visit, never read "
    "as no attachments": [
        "test_page.py::test_sign_in_page_or_identity_provider_is_signed_out",
        "test_page.py::test_login_form_on_the_po_url_is_signed_out",
        "test_page.py::test_another_page_on_the_same_origin_is_unexpected_not_empty",
        "test_engine.py::test_signed_out_after_expiry_writes_no_final_folder",
    ],
    "coupa-domain: Earlier tools 1: work pauses until someone signs in; nothing is marked "
    "failed or empty": [
        "test_journal.py::test_leased_to_auth_wait_on_signed_out_does_not_count_the_attempt",
        "test_daemon_browser.py::test_mid_batch_session_expiry_waits_for_sign_in_and_completes",
        "test_pool_browser.py::test_profile_sign_in_waits_for_a_new_sign_in_then_completes",
        "test_pool_browser.py::test_wrong_password_stops_sign_in_attempts_until_fixed",
    ],
    "coupa-domain: Earlier tools 2: not found and no access are told apart": [
        "test_page.py::test_error_pages_served_with_200",
        "test_engine.py::test_error_pages_are_final_and_visited_once",
    ],
    "coupa-domain: Earlier tools 2: permanent errors are not retried": [
        "test_engine.py::test_error_pages_are_final_and_visited_once",
        "test_journal.py::test_leased_to_final_outcome_at_once_never_retried",
        "test_engine_evidence.py::test_a_permanent_download_problem_ends_the_po_on_its_first_attempt",
        "test_download.py::test_statuses",
    ],
    "coupa-domain: Earlier tools 3: wait for a condition, not a clock": [
        "test_engine.py::test_no_attachments_finishes_with_an_empty_folder",
        "test_engine_evidence.py::test_page_without_attachments_is_not_held_by_a_timer_due_after_the_window",
        "test_page.py::test_the_wait_until_idle_is_predicted_from_the_next_timer_and_the_quiet_time",
        "test_page.py::test_static_page_is_idle_at_once_and_a_polling_page_never",
    ],
    "coupa-domain: Earlier tools 4: the PO's own files of any type are always downloaded; "
    "requisition files added when configured": [
        "test_engine.py::test_requisition_files_by_mode",
        "test_engine.py::test_completed_with_both_shapes_under_the_toolbar",
    ],
    "coupa-domain: Earlier tools 5: a hung browser call does not freeze the tool": [
        "test_daemon_policy.py::test_hung_worker_is_killed_by_heartbeat_silence",
        "test_engine.py::test_a_hanging_page_does_not_stall_the_other_tabs",
        "test_cdp.py::test_an_evaluation_sent_during_a_pending_navigation_is_answered_after_the_commit",
        "test_cdp.py::test_a_command_to_a_silent_connection_times_out_and_the_connection_closes",
    ],
    "coupa-domain: Earlier tools 5: shutdown on SIGTERM runs": [
        "test_daemon_policy.py::test_sigterm_drains_in_flight_pos_then_exits_zero",
        "test_pool_browser.py::test_sigterm_in_a_busy_batch_stops_within_the_budget_and_leaves_no_browser",
    ],
    "coupa-domain: Earlier tools 5: restarts are bounded: FATAL after repeated fast failures": [
        "test_daemon_policy.py::test_slot_that_cannot_start_becomes_fatal_and_the_daemon_stays_up",
        "test_daemon_policy.py::test_missing_chromium_keeps_the_daemon_up_saying_why_and_pos_queued",
    ],
    "coupa-domain: Earlier tools 5: start-up kills only coupad's own leftover browsers": [
        "test_fetch_cli.py::test_start_up_sweep_removes_our_leftover_browsers_only",
    ],
    "coupa-domain: Earlier tools 6: statuses are written as each PO ends; a crash loses "
    "nothing": [
        "test_journal.py::test_kill_9_mid_workload_loses_nothing_and_does_nothing_twice",
        "test_daemon_browser.py::test_kill_9_at_any_point_resumes_without_loss_or_double_download",
        "test_daemon_policy.py::test_sigterm_drains_in_flight_pos_then_exits_zero",
    ],
    "coupa-domain: Earlier tools 6: a time limit is per PO, not a cut-off of the whole batch": [
        "test_engine.py::test_a_hanging_page_ends_at_the_deadline",
        "test_fetch_cli.py::test_retries_that_run_out_end_failed_and_exit_1",
    ],
    "coupa-domain: Earlier tools 7: speed claims are measured against a real browser": [
        "test_docs.py::test_the_readme_performance_figures_are_those_make_bench_measured",
    ],
    # ---- coupa-domain.md: Folder and report conventions ------------------------------------
    "coupa-domain: Folders: <PO>__WORK while in progress, renamed once to <PO>_<STATUS>": [
        "test_folders.py::test_open_creates_the_work_folder",
        "test_folders.py::test_finalize_renames_once",
        "test_folders.py::test_finalize_refuses_a_status_that_is_not_final",
        "test_engine.py::test_abort_all_leaves_work_folders_for_the_retry",
    ],
    "coupa-domain: Folders: exactly one final folder per PO; a retry reuses the work folder": [
        "test_folders.py::test_reopen_reuses_the_work_folder_and_its_entries",
        "test_folders.py::test_a_final_folder_is_reopened_as_the_work_folder",
        "test_folders.py::test_never_two_folders_when_one_exists_in_another_group",
        "test_folders.py::test_kill_9_at_any_moment_never_loses_a_listed_file_nor_duplicates",
        "test_coupactl.py::test_retry_failed_reruns_failed_pos_and_retry_id_reruns_a_batch",
    ],
    "coupa-domain: Folders: optionally grouped by supplier": [
        "test_engine.py::test_grouped_by_supplier",
        "test_folders.py::test_open_with_a_group_creates_it_under_the_safe_group_name",
    ],
    "coupa-domain: Input: the PO column is PO_NUMBER, PO Number, po, Order Number, ...": [
        "test_intake.py::test_hostile_file_is_accepted_with_exactly_its_row_errors",
        "test_daemon_policy.py::test_csv_dropped_gives_report_folders_and_status",
        "test_daemon_policy.py::test_xlsx_input_gets_csv_and_xlsx_reports_with_its_extra_columns",
    ],
    "coupa-domain: Input: .xlsx files": [
        "test_intake.py::test_good_xlsx_keeps_the_sheet_and_format",
        "test_intake.py::test_hostile_file_is_accepted_with_exactly_its_row_errors",
        "test_daemon_policy.py::test_xlsx_input_gets_csv_and_xlsx_reports_with_its_extra_columns",
    ],
    "coupa-domain: Input: European ;-separated CSV in cp1252 with a BOM": [
        # corpus.py's cp1252-semicolon-bom.csv and cp1252-no-bom.csv
        "test_intake.py::test_hostile_file_is_accepted_with_exactly_its_row_errors",
    ],
    "coupa-domain: Input: extra columns survive into the report": [
        "test_report.py::test_csv_report_keeps_input_order_and_columns_then_adds_ours",
        "test_daemon_policy.py::test_csv_dropped_gives_report_folders_and_status",
        "test_daemon_policy.py::test_xlsx_input_gets_csv_and_xlsx_reports_with_its_extra_columns",
    ],
    "coupa-domain: Report: STATUS, SUPPLIER, ATTACHMENTS_FOUND, ATTACHMENTS_DOWNLOADED, "
    "names, LAST_PROCESSED, ERROR_MESSAGE, DOWNLOAD_FOLDER, COUPA_URL": [
        "test_report.py::test_the_added_columns_are_the_ones_users_expect_by_name",
        "test_report.py::test_csv_report_keeps_input_order_and_columns_then_adds_ours",
        "test_daemon_browser.py::test_files_dropped_together_and_slowly_all_become_verified_folders",
    ],
    # ---- README: the opening section ---------------------------------------------------------
    "README: Intro: several POs at once per browser, in tabs": [
        "test_engine.py::test_page_loads_overlap_across_tabs",
        "test_engine.py::test_three_tabs_with_slow_downloads_keep_every_file_in_its_own_folder",
    ],
    "README: Intro: a crash or kill -9 resumes: nothing lost, nothing downloaded twice": [
        "test_daemon_browser.py::test_kill_9_at_any_point_resumes_without_loss_or_double_download",
        "test_folders.py::test_crash_at_a_precise_moment_then_restart",
        "test_supervisord.py::test_kill_9_of_the_daemon_is_restarted_by_supervisord_and_the_batch_resumes",
    ],
    # ---- README: Two commands ----------------------------------------------------------------
    "README: Two commands: make demo runs the simulator, a real daemon and real browsers on a "
    "sample CSV": [
        "test_daemon_browser.py::test_coupad_demo_runs_its_sample_batch_end_to_end",
        "test_docs.py::test_readme_shows_the_two_commands",
    ],
    # ---- README: coupad commands -------------------------------------------------------------
    "README: coupad commands: every command documented, with --help and an example": [
        "test_docs.py::test_readme_documents_every_coupad_command",
        "test_docs.py::test_every_coupad_command_has_help_with_an_example",
    ],
    "README: coupad commands: coupad run stops cleanly on SIGTERM and SIGINT": [
        "test_daemon_policy.py::test_sigterm_drains_in_flight_pos_then_exits_zero",
        "test_daemon_policy.py::test_sigint_stops_the_daemon_cleanly_like_sigterm",
    ],
    "README: coupad commands: coupad demo": [
        "test_daemon_browser.py::test_coupad_demo_runs_its_sample_batch_end_to_end",
    ],
    "README: coupad commands: coupad sim": [
        "test_sim_http.py::test_cli_prints_its_url_and_stops_cleanly_on_signal",
        "test_sim_http.py::test_cli_refuses_a_port_in_use",
    ],
    "README: coupad commands: coupad login (without a display it explains the headless ways)": [
        "test_check_login.py::test_login_without_a_display_explains_the_headless_ways",
    ],
    "README: coupad commands: coupad check validates config, folders, browser, tenant, "
    "sign-in": [
        "test_check_login.py::test_check_passes_against_a_tenant_with_working_form_sign_in",
        "test_check_login.py::test_check_fails_on_a_wrong_password_and_an_open_password_file",
        "test_check_login.py::test_check_reports_a_tenant_that_does_not_answer",
        "test_check_login.py::test_check_with_a_bad_config_names_the_key",
    ],
    "README: coupad commands: coupad fetch prints a line per PO": [
        "test_fetch_cli.py::test_fetch_prints_one_line_per_po_and_exits_0_when_all_are_final",
        "test_fetch_cli.py::test_retries_that_run_out_end_failed_and_exit_1",
    ],
    # ---- README: coupactl commands -----------------------------------------------------------
    "README: coupactl commands: every command documented, with --help, an example and --json": [
        "test_docs.py::test_readme_documents_every_coupactl_command",
        "test_docs.py::test_every_coupactl_command_has_help_with_an_example",
    ],
    "README: coupactl commands: status exits 0 when the daemon runs, 3 when it does not": [
        "test_coupactl.py::test_every_command_without_a_daemon_exits_3_saying_not_running",
        "test_coupactl.py::test_a_stale_socket_or_a_plain_file_means_not_running",
        "test_daemon_policy.py::test_coupactl_without_a_daemon_exits_3",
    ],
    "README: coupactl commands: status shows workers, sign-in state, batches with a progress "
    "bar, rate": [
        "test_coupactl.py::test_status_batches_and_batch_human_and_json",
        "test_daemon_policy.py::test_slot_that_cannot_start_becomes_fatal_and_the_daemon_stays_up",
    ],
    "README: coupactl commands: batches, and batch ID by a unique prefix": [
        "test_coupactl.py::test_status_batches_and_batch_human_and_json",
        "test_coupactl.py::test_unknown_batch_ids_are_refused_with_no_such_batch",
    ],
    "README: coupactl commands: submit copies under a hidden name, then renames": [
        "test_coupactl.py::test_submit_copies_files_into_the_inbox_and_they_become_batches",
        "test_coupactl.py::test_submit_refuses_what_is_not_a_csv_or_xlsx_file",
        "test_coupactl.py::test_submit_without_a_daemon_queues_the_file_for_the_next_start",
        "test_inbox.py::test_a_file_renamed_into_the_inbox_is_ready_before_the_quiet_period",
    ],
    "README: coupactl commands: pause and resume": [
        "test_coupactl.py::test_pause_stops_claiming_and_resume_goes_on",
    ],
    "README: coupactl commands: drain closes the browsers once idle": [
        "test_coupactl.py::test_drain_closes_the_workers_and_resume_starts_new_ones",
    ],
    "README: coupactl commands: retry ID or --failed": [
        "test_coupactl.py::test_retry_failed_reruns_failed_pos_and_retry_id_reruns_a_batch",
        "test_coupactl.py::test_retry_needs_an_id_or_failed",
        "test_journal.py::test_requeue_failed_only_reruns_failed_and_partial_and_reopens",
    ],
    "README: coupactl commands: cancel; the batch's report is still written": [
        "test_coupactl.py::test_cancel_ends_a_batch_s_waiting_pos_and_still_writes_its_report",
        "test_coupactl.py::test_cancel_with_a_po_in_flight_keeps_its_folder_and_report_in_agreement",
        "test_journal.py::test_cancel_moves_every_waiting_state_to_cancelled_and_lets_flight_land",
    ],
    "README: coupactl commands: stop, like SIGTERM": [
        "test_coupactl.py::test_stop_lets_the_po_in_flight_finish_and_the_daemon_exit_0",
    ],
    # ---- README: Inbox, outbox, downloads ----------------------------------------------------
    "README: Inbox: inbox/high and inbox/low set the priority": [
        "test_inbox.py::test_files_present_at_start_are_picked_up_with_their_priority",
        "test_daemon_policy.py::test_small_batch_is_not_stuck_behind_a_big_one_and_high_priority_goes_first",
        "test_journal.py::test_claim_high_priority_beats_normal_beats_low",
    ],
    "README: Inbox: a file is read once it has stopped changing": [
        "test_inbox.py::test_a_file_written_slowly_in_pieces_is_returned_once_and_complete",
        "test_inbox.py::test_polling_waits_the_quiet_period_after_the_last_change",
        "test_daemon_browser.py::test_files_dropped_together_and_slowly_all_become_verified_folders",
    ],
    "README: Inbox: accepted files move to inbox/accepted/NAME.<batch-id>.csv": [
        "test_inbox.py::test_accept_moves_with_the_batch_id_and_never_overwrites",
        "test_daemon_policy.py::test_csv_dropped_gives_report_folders_and_status",
    ],
    "README: Inbox: rejected files move to inbox/rejected with NAME.reason.txt": [
        "test_inbox.py::test_reject_moves_beside_a_reason_and_never_overwrites",
        "test_inbox.py::test_hostile_corpus_gets_clear_outcomes_and_good_files_after_it_still_work",
        "test_daemon_policy.py::test_three_files_at_once_make_three_batches_and_bad_files_do_not_stop_it",
        "test_daemon_policy.py::test_the_whole_hostile_corpus_then_a_good_file",
    ],
    "README: Inbox: temporary, lock and hidden files are never read": [
        "test_inbox.py::test_is_candidate",
        "test_inbox.py::test_temporary_lock_hidden_linked_and_nested_files_are_ignored",
    ],
    "README: Inbox: a batch processes each PO once (duplicate rows)": [
        "test_journal.py::test_create_batch_with_duplicates_and_invalid_rows_keeps_every_row_in_order",
        "test_fetch_cli.py::test_fetch_prints_one_line_per_po_and_exits_0_when_all_are_final",
        "test_daemon_policy.py::test_csv_dropped_gives_report_folders_and_status",
    ],
    "README: Inbox: rows that are not PO numbers are reported INVALID with the reason": [
        "test_daemon_policy.py::test_csv_dropped_gives_report_folders_and_status",
        "test_report.py::test_csv_report_keeps_input_order_and_columns_then_adds_ours",
        "test_intake.py::test_hostile_file_is_accepted_with_exactly_its_row_errors",
    ],
    "README: Inbox: a file whose every row is invalid is still accepted": [
        "test_journal.py::test_batch_where_every_row_is_invalid_is_finished_at_once",
        "test_intake.py::test_hostile_file_is_accepted_with_exactly_its_row_errors",
    ],
    "README: Downloads: files get safe names, name (2).ext for duplicates, and a manifest.json "
    "with name, URL, size, sha256": [
        "test_folders.py::test_add_file_places_the_file_and_records_it",
        "test_folders.py::test_duplicate_names_become_numbered_ignoring_case",
        "test_folders.py::test_hostile_names_stay_inside_the_folder",
    ],
    "README: Outbox: NAME.<batch-id>.report.csv (and .xlsx for xlsx input) with every input "
    "row": [
        "test_report.py::test_csv_report_keeps_input_order_and_columns_then_adds_ours",
        "test_daemon_policy.py::test_xlsx_input_gets_csv_and_xlsx_reports_with_its_extra_columns",
    ],
    "README: Outbox: summary.json counts rows and distinct POs per status, mean stage times": [
        "test_report.py::test_summary_counts_statuses_and_distinct_pos_and_lists_the_files",
    ],
    "README: Outbox: reports appear atomically, the summary last": [
        "test_report.py::test_a_reader_never_sees_a_partial_report",
        "test_report.py::test_a_failure_in_the_xlsx_leaves_no_summary_so_the_batch_is_not_complete",
        "test_report.py::test_a_failure_mid_write_leaves_no_report_and_no_temporary_file",
    ],
    "README: Outbox: report cells a spreadsheet would run are neutralised": [
        "test_report.py::test_formula_cells_are_neutralised_in_csv_and_xlsx",
        "test_report.py::test_a_parsed_hostile_file_flows_into_a_safe_report",
    ],
    "README: Downloads: a PO COMPLETED in an earlier batch is not downloaded again; retry "
    "forces a re-run": [
        "test_journal.py::test_skip_completed_points_to_the_existing_folder",
        "test_journal.py::test_skip_completed_looks_at_the_latest_earlier_task_only",
    ],
    # ---- README: What a status means: evidence before verdict ------------------------------
    "README: Evidence before verdict: a page is read when idle (no request, socket, worker or "
    "due timer, a quiet moment)": [
        "test_page.py::test_a_page_is_idle_only_when_nothing_it_started_can_still_change_it",
        "test_page.py::test_what_keeps_a_page_from_being_idle",
        "test_page.py::test_xhr_in_flight_holds_the_page",
        "test_engine_evidence.py::test_page_without_attachments_is_not_held_by_a_timer_due_after_the_window",
    ],
    "README: Evidence before verdict: the hook is installed before Coupa's own scripts": [
        "test_page.py::test_hook_installed_late_when_missing",
        "test_page.py::test_snapshot_waits_for_rendered_attachments_and_reads_the_page",
    ],
    "README: Evidence before verdict: a page that keeps working is read once its list is "
    "unchanged for the window": [
        "test_engine_evidence.py::test_page_that_never_stops_working_is_read_once_its_list_is_unchanged",
    ],
    "README: Evidence before verdict: a list still changing at settle_timeout, or a page whose "
    "own request failed, is retried": [
        "test_engine_evidence.py::test_a_page_whose_list_request_failed_or_whose_list_never_settles_is_not_a_verdict",
        "test_page.py::test_a_failed_request_of_the_page_itself_is_reported",
    ],
    "README: Evidence before verdict: a file counts when complete, of the declared length (or "
    "cleanly closed), and hashed": [
        "test_download.py::test_normal_file_streams_with_its_sha256",
        "test_download.py::test_body_shorter_than_declared_is_retryable_and_leaves_nothing",
        "test_download.py::test_a_close_delimited_body_ended_by_a_reset_is_retryable_and_leaves_nothing",
        "test_download.py::test_broken_chunked_body_is_retryable",
    ],
    "README: Evidence before verdict: a storage redirect sends no cookie, Authorization or "
    "Referer; the manifest keeps the Coupa URL": [
        "test_download_redirects.py::test_a_signed_store_redirect_is_followed_not_refused_as_another_site",
        "test_engine_evidence.py::test_storage_redirects_are_followed_for_links_and_clicks_without_the_coupa_cookie",
        "test_engine_hostile.py::test_hostile_downloads_stay_in_the_po_folder_and_say_why",
    ],
    "README: Evidence before verdict: a permanent download problem ends the PO at once as "
    "PARTIAL or FAILED, with the reason": [
        "test_engine_evidence.py::test_a_permanent_download_problem_ends_the_po_on_its_first_attempt",
        "test_download.py::test_redirect_loop_stops",
        "test_download_redirects.py::test_https_to_plain_http_is_never_followed",
        "test_download.py::test_every_problem_is_either_retryable_or_permanent",
    ],
    "README: Evidence before verdict: throttling, server errors, time-outs and broken "
    "connections are retried": [
        "test_download.py::test_statuses",
        "test_download_redirects.py::test_a_store_refusal_is_retryable",
        "test_download.py::test_stalled_body_times_out",
        "test_engine.py::test_transient_trouble_then_success_on_retry",
    ],
    # ---- README: Configuration ---------------------------------------------------------------
    "README: Configuration: etc/coupad.toml lists every key with its default": [
        "test_config.py::test_sample_config_documents_every_key_with_its_default",
    ],
    "README: Configuration: search order $COUPAD_CONFIG, /etc/coupad, ./etc": [
        "test_config.py::test_search_order_uses_coupad_config_variable",
    ],
    "README: Configuration: COUPAD_<SECTION>_<KEY> overrides the file, the command line both": [
        "test_config.py::test_precedence_cli_over_env_over_file",
        "test_config.py::test_env_booleans_and_lists",
    ],
    "README: Configuration: relative paths are relative to the config file (or "
    "$STATE_DIRECTORY)": [
        "test_config.py::test_relative_paths_are_relative_to_the_file",
        "test_config.py::test_systemd_directories_hold_relative_paths_and_the_socket",
        "test_config.py::test_password_file_is_relative_to_the_config_file",
    ],
    "README: Configuration: mistakes are refused at start-up naming the key": [
        "test_config.py::test_hostile_config_is_refused_naming_the_key",
        "test_check_login.py::test_check_with_a_bad_config_names_the_key",
    ],
    "README: Configuration: sign_in = form signs in on the native form with a mode-600 "
    "password file": [
        "test_check_login.py::test_check_fails_on_a_wrong_password_and_an_open_password_file",
        "test_engine_signin.py::test_wrong_password_is_a_distinct_error",
    ],
    "README: Configuration: sign_in = profile uses the base profile coupad login signed in": [
        "test_engine_signin.py::test_profile_mode_waits_for_sign_in_then_downloads",
        "test_fetch_cli.py::test_profile_mode_without_a_signed_in_profile_says_to_run_login",
        "test_pool_browser.py::test_profile_sign_in_waits_for_a_new_sign_in_then_completes",
    ],
    "README: Configuration: POs wait in AUTH_WAIT, never marked failed or empty; status says a "
    "sign-in is needed": [
        "test_journal.py::test_leased_to_auth_wait_on_signed_out_does_not_count_the_attempt",
        "test_pool_browser.py::test_profile_sign_in_waits_for_a_new_sign_in_then_completes",
        "test_daemon_browser.py::test_mid_batch_session_expiry_waits_for_sign_in_and_completes",
        "test_states.py::test_auth_wait_to_leased_is_illegal_sign_in_first_requeues",
    ],
    # ---- README: Under load and trouble ------------------------------------------------------
    "README: Under load: at most coupa.max_concurrent_pages POs in flight across the pool": [
        "test_throttle.py::test_full_cap_when_nothing_went_wrong",
    ],
    "README: Under load: a 429 or throttling page halves the cap and pauses (Retry-After, or "
    "2 s doubling up to 120 s)": [
        "test_throttle.py::test_throttled_halves_the_cap_and_pauses_every_start",
        "test_throttle.py::test_retry_after_longer_than_the_backoff_is_honoured",
        "test_throttle.py::test_throttles_in_a_row_double_the_pause_up_to_the_cap_and_never_below_one_po",
        "test_throttle.py::test_pos_throttled_in_the_same_wave_count_once",
        "test_pool_browser.py::test_a_429_storm_slows_the_whole_pool_then_the_batch_completes",
    ],
    "README: Under load: POs that end normally grow the cap back a little": [
        "test_throttle.py::test_successes_bring_the_cap_back_gradually",
    ],
    "README: Under load: coupa.min_request_interval spaces PO starts": [
        "test_throttle.py::test_min_interval_spaces_starts_one_at_a_time",
    ],
    "README: Under load: a browser's memory is the PSS of its processes, not summed RSS": [
        "test_memory.py::test_a_process_groups_memory_is_its_pss_not_its_summed_rss",
    ],
    "README: Under load: a browser is recycled between POs after pool.recycle_after_pos": [
        "test_daemon_policy.py::test_a_worker_is_recycled_after_recycle_after_pos_pos",
    ],
    "README: Under load: a browser above pool.max_browser_mb is recycled between POs": [
        "test_pool_browser.py::test_browsers_over_their_memory_limit_are_recycled_between_pos",
        "test_grid_daemon.py::test_remote_browsers_over_their_memory_limit_are_recycled_between_pos",
        "test_grid.py::test_a_remote_browser_reports_its_tabs_heaps_and_they_grow_with_a_page",
    ],
    "README: Under load: the memory limit is the cgroup's (v1 or v2), else the machine's": [
        "test_memory.py::test_v2_cgroup_path_is_read_from_proc_self_cgroup",
        "test_memory.py::test_v1_memory_controller_path",
        "test_memory.py::test_limits_files_are_read_defensively",
        "test_memory.py::test_view_of_this_machine_is_sane",
    ],
    "README: Crashes: a worker or browser that dies is replaced; its POs count one attempt": [
        "test_daemon_policy.py::test_worker_killed_mid_po_is_replaced_and_the_batch_completes",
        "test_pool_browser.py::test_worker_process_killed_mid_po_is_restarted_and_the_batch_completes",
        "test_pool_browser.py::test_browser_killed_under_its_worker_is_replaced_and_the_batch_completes",
        "test_engine.py::test_a_crashed_tab_ends_its_po_at_once_and_the_engine_goes_on",
    ],
    "README: Crashes: a worker whose heartbeat stops is killed with its browser": [
        "test_daemon_policy.py::test_hung_worker_is_killed_by_heartbeat_silence",
        "test_journal.py::test_heartbeat_extends_only_the_owners_leases",
    ],
    "README: Crashes: after max_fast_failures a slot is FATAL and coupactl status says why": [
        "test_daemon_policy.py::test_slot_that_cannot_start_becomes_fatal_and_the_daemon_stays_up",
        "test_daemon_policy.py::test_missing_chromium_keeps_the_daemon_up_saying_why_and_pos_queued",
    ],
    "README: Crashes: when no browser can start the daemon stays up, POs queued, and says "
    "why": [
        "test_daemon_policy.py::test_missing_chromium_keeps_the_daemon_up_saying_why_and_pos_queued",
        "test_notify.py::test_ready_comes_when_no_browser_can_start_so_systemd_does_not_time_out",
    ],
    "README: Sign-in lost: with a refused password nothing more is tried until it is fixed "
    "and resumed": [
        "test_pool_browser.py::test_wrong_password_stops_sign_in_attempts_until_fixed",
    ],
    "README: Sign-in lost: form mode signs fresh browsers in again by themselves": [
        "test_daemon_browser.py::test_mid_batch_session_expiry_waits_for_sign_in_and_completes",
        "test_fetch_cli.py::test_session_expiry_mid_run_signs_in_again",
    ],
    "README: SIGHUP applies live keys and names those that wait for a restart": [
        "test_reload.py::test_sighup_grows_the_pool_and_names_what_needs_a_restart",
        "test_reload.py::test_plan_applies_live_keys_and_keeps_restart_only_ones",
        "test_reload.py::test_plan_with_nothing_changed_changes_nothing",
    ],
    # ---- README: Running as a service --------------------------------------------------------
    "README: Service: systemd Type=notify: READY once browsers are warm, STATUS, watchdog": [
        "test_notify.py::test_ready_status_watchdog_and_stopping_reach_the_notify_socket",
        "test_notify.py::test_watchdog_meant_for_another_pid_is_not_answered",
        "test_deploy_files.py::test_unit_is_type_notify_with_the_watchdog_and_only_the_main_process_speaking",
    ],
    "README: Service: the unit (KillMode=mixed, TimeoutStopSec above the drain, its own user "
    "and folders), each line commented": [
        "test_deploy_files.py::test_unit_stops_with_sigterm_to_the_daemon_and_waits_longer_than_the_drain",
        "test_deploy_files.py::test_unit_runs_as_its_own_user_in_systemd_managed_folders",
        "test_deploy_files.py::test_unit_does_not_forbid_the_writable_executable_memory_chromium_needs",
        "test_deploy_files.py::test_every_unit_directive_is_commented",
        "test_deploy_files.py::test_systemd_analyze_verify_accepts_the_unit_without_a_word",
    ],
    "README: Service: coupactl finds the daemon's socket in /run/coupad; submit asks the "
    "daemon where its inbox is": [
        "test_deploy_files.py::test_coupactl_in_an_admin_shell_finds_the_daemon_the_unit_started",
        "test_coupactl.py::test_submit_copies_files_into_the_inbox_and_they_become_batches",
    ],
    "README: Service: supervisord start, stop, restart in a busy batch, and kill -9": [
        "test_supervisord.py::test_stop_start_and_restart_with_a_busy_batch_stop_cleanly_and_the_batch_finishes",
        "test_supervisord.py::test_kill_9_of_the_daemon_is_restarted_by_supervisord_and_the_batch_resumes",
        "test_supervisord.py::test_exit_0_and_exit_75_count_as_expected_and_are_not_restarted",
        "test_deploy_files.py::test_every_supervisord_option_is_commented",
    ],
    "README: Service: logs carry component and PID, JSON on request; no cookie or password "
    "logged": [
        "test_daemon_policy.py::test_json_log_format_has_component_and_pid_on_every_line",
        "test_daemon_browser.py::test_files_dropped_together_and_slowly_all_become_verified_folders",
        "test_download_redirects.py::test_no_query_of_the_store_is_logged_or_kept",
    ],
    "README: Service: the first SIGTERM drains and exits 0": [
        "test_daemon_policy.py::test_sigterm_drains_in_flight_pos_then_exits_zero",
        "test_pool_browser.py::test_sigterm_in_a_busy_batch_stops_within_the_budget_and_leaves_no_browser",
    ],
    "README: Service: a second signal forces the stop: POs stay queued without an attempt, "
    "exit 75": [
        "test_daemon_policy.py::test_second_sigterm_forces_the_stop_and_keeps_pos_queued",
        "test_supervisord.py::test_exit_0_and_exit_75_count_as_expected_and_are_not_restarted",
    ],
    "README: Service: no browser outlives the daemon; start-up sweeps only coupad's own": [
        "test_daemon_policy.py::test_kill_9_of_the_daemon_leaves_no_worker_and_the_restart_resumes",
        "test_pool_browser.py::test_sigterm_in_a_busy_batch_stops_within_the_budget_and_leaves_no_browser",
        "test_engine.py::test_close_leaves_no_process",
        "test_fetch_cli.py::test_start_up_sweep_removes_our_leftover_browsers_only",
    ],
    "README: Service: a second daemon on the same state refuses to start": [
        "test_daemon_policy.py::test_second_daemon_on_the_same_state_refuses_to_start",
        "test_control.py::test_stale_socket_file_is_replaced_and_live_one_refuses_a_second_server",
    ],
    # ---- README: How it works ----------------------------------------------------------------
    "README: How it works: leases of an earlier daemon life go back to the queue at start-up": [
        "test_journal.py::test_expire_leases_at_start_up_takes_every_lease",
        "test_daemon_policy.py::test_kill_9_of_the_daemon_leaves_no_worker_and_the_restart_resumes",
    ],
    "README: How it works: a silent worker's lease goes back while running, the attempt "
    "counts": [
        "test_journal.py::test_leased_to_queued_when_the_lease_expires_counting_the_attempt",
        "test_journal.py::test_lease_expiry_exhausting_the_budget_ends_failed",
    ],
    "README: How it works: retries back off exponentially with jitter, honouring Retry-After": [
        "test_journal.py::test_retry_backoff_grows_is_capped_and_respects_retry_after",
        "test_journal.py::test_retry_jitter_is_bounded_and_seeded",
        "test_journal.py::test_record_uses_backoff_with_jitter_and_retry_after",
    ],
    "README: How it works: after tasks.max_attempts a PO ends FAILED, or PARTIAL with files on "
    "disk": [
        "test_journal.py::test_retries_exhausted_end_failed_with_the_last_reason",
        "test_journal.py::test_retries_exhausted_with_files_on_disk_end_partial",
    ],
    "README: How it works: the legal moves between task, worker and batch states": [
        "test_states.py::test_legal_task_move",
        "test_states.py::test_illegal_task_move",
        "test_states.py::test_worker_move",
        "test_states.py::test_batch_move",
    ],
    "README: How it works: a small batch is not stuck behind a big one (round-robin)": [
        "test_journal.py::test_claim_round_robin_small_batch_is_not_stuck_behind_a_huge_one",
        "test_daemon_policy.py::test_small_batch_is_not_stuck_behind_a_big_one_and_high_priority_goes_first",
    ],
    "README: How it works: tabs are reused for pool.pos_per_tab POs, an idle tab is blanked": [
        "test_engine.py::test_a_tab_is_replaced_after_serving_pos_per_tab_pos",
        "test_engine.py::test_one_tab_serves_po_after_po_each_reading_its_own_page",
        "test_engine.py::test_a_tab_that_does_not_turn_blank_is_replaced",
    ],
    "README: How it works: every tab is visible; lists drawn in animation frames or fetched once seen are read": [
        "test_engine_visible.py::test_the_simulators_frame_and_visible_pages_show_nothing_in_a_background_tab",
        "test_engine_visible.py::test_pos_in_every_tab_see_lists_that_render_only_while_visible",
    ],
    "README: Under load and trouble: a PO that only watches its page holds no tab slot and no politeness slot": [
        "test_engine_visible.py::test_a_po_that_only_watches_its_page_lets_the_next_po_start",
        "test_daemon_policy.py::test_pos_that_only_watch_their_page_let_more_pos_start",
        "test_throttle.py::test_a_worker_takes_more_pos_only_while_some_watch_and_never_past_watching_tabs",
    ],
    "README: How it works: pages are read over the browser's one DevTools connection": [
        "test_cdp.py::test_three_tabs_evaluate_at_once_over_one_socket",
        "test_cdp.py::test_an_evaluation_sent_during_a_pending_navigation_is_answered_after_the_commit",
        "test_cdp.py::test_a_crashed_tab_is_reported_and_the_others_go_on",
        "test_cdp.py::test_the_endpoint_is_grid_s_or_a_local_browser_s",
    ],
    "README: How it works: an idle worker waits without spinning": [
        "test_pool_browser.py::test_idle_workers_wait_without_spinning",
        "test_engine.py::test_an_idle_engine_waits_on_the_callers_news_and_returns_when_it_comes",
    ],
    "README: How it works: a file is in the manifest only once complete and hashed; a retry "
    "skips files already there": [
        "test_folders.py::test_kill_9_at_any_moment_never_loses_a_listed_file_nor_duplicates",
        "test_folders.py::test_crash_at_a_precise_moment_then_restart",
        "test_folders.py::test_reopen_drops_entries_whose_file_is_missing_or_truncated",
        "test_folders.py::test_reopen_removes_staging_temp_and_unrecorded_files",
    ],
    # ---- coupa-domain.md: Folders, and README: Outlook .msg attachments -------------------------
    "coupa-domain: Folders: a PDF beside each Outlook .msg attachment, the original kept": [
        "test_daemon_pdfs.py::test_a_mail_gets_a_pdf_a_file_that_is_no_mail_a_reason_and_the_pos_complete",
        "test_pdfs.py::test_a_pdf_beside_each_mail_listed_as_derived_and_a_reason_for_the_other",
        "test_daemon_browser.py::test_coupad_demo_runs_its_sample_batch_end_to_end",
    ],
    "README: Outlook .msg attachments: the PDF is listed in manifest.json as derived from its "
    "mail, with its size and sha256": [
        "test_daemon_pdfs.py::test_a_mail_gets_a_pdf_a_file_that_is_no_mail_a_reason_and_the_pos_complete",
        "test_manifest.py::test_a_derived_pdf_is_listed_with_its_source_and_optional_fields_only_when_set",
    ],
    "README: Outlook .msg attachments: a mail that cannot be converted keeps its bytes, gets no "
    "PDF, its reason in the manifest and the report, and its PO stays COMPLETED": [
        "test_daemon_pdfs.py::test_a_mail_gets_a_pdf_a_file_that_is_no_mail_a_reason_and_the_pos_complete",
        "test_pdfs.py::test_a_pdf_beside_each_mail_listed_as_derived_and_a_reason_for_the_other",
    ],
    "README: Outlook .msg attachments: the report adds PDFS and PDF_ERRORS after the contract's "
    "columns; summary.json counts PDFs made and failed": [
        "test_report.py::test_pdfs_of_mails_are_counted_per_po_in_the_summary_and_shown_per_row",
        "test_report.py::test_the_added_columns_are_the_ones_users_expect_by_name",
    ],
    "README: Outlook .msg attachments: msg_to_pdf = false makes no PDFs": [
        "test_daemon_pdfs.py::test_with_msg_to_pdf_off_mails_stay_as_they_are",
        "test_config.py::test_env_booleans_and_lists",
    ],
    "README: Outlook .msg attachments: no task of a PO is claimed while its folder gets PDFs, "
    "and none starts while one is in flight": [
        "test_journal_pdfs.py::test_claim_leaves_out_the_pos_whose_folders_get_pdfs",
        "test_journal_pdfs.py::test_a_po_in_flight_in_another_batch_holds_its_pdfs_back",
    ],
    "README: Outlook .msg attachments: after kill -9 at any moment one PDF per mail, none half "
    "written, a listed one kept": [
        "test_daemon_pdfs.py::test_kill_9_while_mails_are_converted_leaves_one_pdf_per_mail_after_the_restart",
        "test_pdfs.py::test_a_pdf_written_but_not_listed_before_a_crash_is_made_again_once",
        "test_pdfs.py::test_a_pdf_already_listed_and_intact_is_not_made_again",
        "test_journal_pdfs.py::test_a_final_po_s_mails_are_pending_in_the_same_transaction",
    ],
    "README: Outlook .msg attachments: a reopened folder keeps the PDF with its mail; a derived "
    "entry without its source is dropped with its file": [
        "test_manifest.py::test_a_reopened_folder_keeps_the_pdf_and_the_mail_s_pdf_error",
        "test_manifest.py::test_a_derived_entry_without_a_kept_source_is_dropped_with_its_file",
        "test_manifest.py::test_a_pdf_whose_mail_is_gone_goes_with_it",
    ],
    "README: Outlook .msg attachments: the converter is started by the first mail and stopped "
    "when idle, off the daemon's loop": [
        "test_pdfs.py::test_the_maker_runs_jobs_off_the_caller_s_thread_and_stops_its_converter_when_idle",
    ],
    # ---- README: Performance -----------------------------------------------------------------
    "README: Performance: the tables are the figures make bench recorded": [
        "test_docs.py::test_the_readme_performance_figures_are_those_make_bench_measured",
    ],
}

# Asked for by the documents, not done by coupad yet: never counted as covered.
PENDING: dict[str, str] = {
    "coupa-domain: Folders: optionally grouped by extra columns of the input":
        "not implemented: downloads.group_by accepts only '' or 'supplier'",
}

# Implemented, but no test checks it (the reason says why none was added).
UNTESTED: dict[str, str] = {
    "README: Under load: above pool.memory_high_watermark no new PO starts and the largest "
    "browser is recycled, until use falls 5 points below":
        "the watermark cannot be set below 0.1 and the test machines' memory use is far lower; "
        "a test needs a tight memory cgroup (or a seam to fake the memory view in the daemon)",
    "README: Crashes: while one slot is FATAL the other slots go on, and a FATAL slot is "
    "tried again every pool.restart_backoff_max seconds":
        "the FATAL tests make every slot fail (COUPAD_FAKE_START applies to all) and do not "
        "wait for the retry",
    "README: Sign-in lost: a signed-in profile copied into state/profiles/base is noticed by "
    "itself":
        "the profile test tells the daemon with the profile_updated command, as coupad login "
        "does; the daemon's own check of the profile's stamp is not exercised",
    "README: Two commands: make installs what is missing; without root it prints the apt-get "
    "command":
        "the Makefile's install steps are not run by any test",
}

NODE = re.compile(r"(test_\w+\.py)::(\w+)")
PREFIXES = ("coupa-domain: ", "README: ")


@cache
def functions_of(module: str) -> frozenset[str]:
    """Names of the module-level test functions of ``tests/<module>``, read without importing."""
    tree = ast.parse((TESTS / module).read_text(encoding="utf-8"), filename=module)
    return frozenset(node.name for node in tree.body
                     if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                     and node.name.startswith("test_"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_case_names_tests_that_exist(case: str) -> None:
    nodes = CASES[case]
    assert nodes, f"no test named for {case!r}"
    assert len(set(nodes)) == len(nodes), f"a test named twice for {case!r}"
    for node in nodes:
        match = NODE.fullmatch(node)
        assert match, f"{node!r} is not 'test_<module>.py::test_<function>'"
        module, function = match.groups()
        assert module != Path(__file__).name, "the index does not cover a case by itself"
        assert (TESTS / module).is_file(), f"{node}: no module tests/{module}"
        assert function in functions_of(module), f"{node}: no function {function} in {module}"


def test_cases_are_named_after_their_document() -> None:
    for case in [*CASES, *PENDING, *UNTESTED]:
        assert case.startswith(PREFIXES), case
        assert case == case.strip() and "  " not in case, repr(case)


def test_pending_and_untested_cases_are_not_counted_as_covered() -> None:
    assert not set(PENDING) & set(CASES)
    assert not set(UNTESTED) & set(CASES)
    assert not set(PENDING) & set(UNTESTED)
    assert all(reason.strip() for reason in [*PENDING.values(), *UNTESTED.values()])
